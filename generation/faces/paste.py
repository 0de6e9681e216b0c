"""Paste-back: an (edited) aligned crop into the full image, through the inverse of its alignment.

The blend mask is the crop square mapped back into the image, eroded and feathered: with ``d`` the
distance (image px) of a pixel inside the square's edge, the mask is 0 for ``d <= erode`` and rises
smoothly (smoothstep) to 1 at ``d = erode + feather``. Defaults: ``feather = sqrt(square's area) /
20`` (5% of its side, about a fifth of the eye distance) and ``erode = feather / 2``. Where the
mask is 0 (everything outside the square, and its outermost band) the output is the input, bit for
bit.

The crop may have any size (e.g. 4x the aligned size from the upscale pipeline): its position comes
from the alignment, in coordinates that do not depend on its resolution. A crop larger than its
footprint in the image is first resized to that footprint with an antialiasing filter, then sampled
bicubically.

Colour matching (``match_colour=True``, off by default) moves each channel of the pasted crop to
the mean and standard deviation of the original in the feather band (the ring where both show), for
an edit that shifted the overall tone; the face's own changes inside are kept relative to that.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generation.faces.align import AlignedFace, map_grid


def _roi(aligned: AlignedFace, image_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) inclusive pixel bounds of the crop square in the image, or None if it is outside."""
    H, W = image_hw
    q = aligned.quad
    x0, y0 = max(int(math.floor(q[:, 0].min())), 0), max(int(math.floor(q[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(q[:, 0].max())), W - 1), min(int(math.ceil(q[:, 1].max())), H - 1)
    if x1 < x0 or y1 < y0:
        return None
    return x0, y0, x1, y1


def _normalized_matrix(aligned: AlignedFace) -> np.ndarray:
    """Image px -> crop coordinates in [-1, 1] (the square's outer edges at -1 and 1)."""
    r = aligned.size
    to_unit = np.array([[2.0 / r, 0, 1.0 / r - 1], [0, 2.0 / r, 1.0 / r - 1], [0, 0, 1.0]])
    return to_unit @ aligned.inverse


def _mask(uv: torch.Tensor, side: float, feather: float, erode: float) -> torch.Tensor:
    """[h, w] from crop coordinates ``uv`` [h, w, 2] in [-1, 1] (the module docstring)."""
    d = (1 - uv.abs().amax(-1)) * (side / 2)  # px inside the square's edge
    t = ((d - erode) / max(feather, 1e-6)).clamp(0, 1)
    return (t * t * (3 - 2 * t)).float()


def _defaults(aligned: AlignedFace, feather: float | None, erode: float | None) -> tuple[float, float]:
    feather = aligned.side / 20 if feather is None else float(feather)
    erode = feather / 2 if erode is None else float(erode)
    if feather < 0 or erode < 0:
        raise ValueError(f"feather and erode must be >= 0 px, got {feather}, {erode}")
    return feather, erode


def _roi_mask(aligned: AlignedFace, feather: float | None, erode: float | None, device: torch.device | str
              ) -> tuple[tuple[int, int, int, int], torch.Tensor, torch.Tensor] | None:
    """Over the crop square's bounds in the image: (x0, y0, x1, y1) inclusive (:func:`_roi`), the crop
    coordinates ``uv`` [h, w, 2] of each pixel and the blend mask [h, w] (:func:`_mask`); None when the
    square is outside the image. ``feather`` and ``erode`` are checked first either way."""
    feather, erode = _defaults(aligned, feather, erode)
    roi = _roi(aligned, aligned.image_size)
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    uv = map_grid(_normalized_matrix(aligned), (y1 - y0 + 1, x1 - x0 + 1), origin=(x0, y0), device=device)
    return roi, uv, _mask(uv, aligned.side, feather, erode)


def _full_mask(image_hw: tuple[int, int], found, device: torch.device | str) -> torch.Tensor:
    """float32 [H, W]: zeros, with the mask of ``found`` (a :func:`_roi_mask` result, or None) in its bounds."""
    full = torch.zeros(*image_hw, device=device)
    if found is not None:
        (x0, y0, x1, y1), _, mask = found
        full[y0:y1 + 1, x0:x1 + 1] = mask
    return full


def paste_mask(aligned: AlignedFace, *, feather: float | None = None, erode: float | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """The blend mask of :func:`paste_back`, float32 [H, W] in [0, 1] over the whole source image."""
    return _full_mask(aligned.image_size, _roi_mask(aligned, feather, erode, device), device)


def paste_back(image: Any, aligned: AlignedFace, crop: torch.Tensor | None = None, *, feather: float | None = None,
               erode: float | None = None, match_colour: bool = False, return_mask: bool = False,
               name: str | None = None):
    """``crop`` (float [3, r, r] or [1, 3, r, r] in [-1, 1], any r; default ``aligned.crop``) put back
    where ``aligned`` took it from ``image`` -> float [3, H, W] in [-1, 1] (and the mask [H, W] in
    [0, 1] with ``return_mask``). ``image``: the source, float [3, H, W] in [-1, 1] (or PIL, path,
    uint8 HxWx3 array); the result is a new tensor, equal to ``image`` bit for bit wherever the
    mask is 0. See the module docstring for ``feather``, ``erode`` (px) and ``match_colour``."""
    from generation.pipeline_utils import image_to_tensor

    img = image_to_tensor(image, name or "image")
    H, W = img.shape[-2:]
    if (H, W) != aligned.image_size:
        raise ValueError(f"the image is {W}x{H} but the face was aligned on a "
                         f"{aligned.image_size[1]}x{aligned.image_size[0]} one")
    crop = aligned.crop if crop is None else crop
    if crop is None:
        raise ValueError("no crop to paste: pass crop= (the aligned face carries none)")
    crop = crop[0] if crop.ndim == 4 and crop.shape[0] == 1 else crop
    if crop.ndim != 3 or crop.shape[0] != 3 or crop.shape[1] != crop.shape[2]:
        raise ValueError(f"the crop must be a square [3, r, r] image, got {tuple(crop.shape)}")
    found = _roi_mask(aligned, feather, erode, img.device)
    out = img.clone()
    if found is None:
        return (out, _full_mask((H, W), None, img.device)) if return_mask else out
    (x0, y0, x1, y1), uv, mask = found
    src = crop.to(img.device).float()
    r = src.shape[-1]
    if r > 1.25 * aligned.side:  # the crop is finer than its footprint: resize it to that first
        n = max(2, round(aligned.side))
        src = F.interpolate(src[None], size=(n, n), mode="bicubic", antialias=True, align_corners=False)[0].clamp(-1, 1)
    warped = F.grid_sample(src[None], uv[None], mode="bicubic", padding_mode="border", align_corners=False)
    warped = warped[0].clamp(-1, 1)
    before = img[:, y0:y1 + 1, x0:x1 + 1]
    if match_colour:
        warped = _match_colour(warped, before, (mask > 0) & (mask < 1))
    blended = before + (warped.to(before.dtype) - before) * mask.to(before.dtype)
    out[:, y0:y1 + 1, x0:x1 + 1] = torch.where(mask > 0, blended, before)
    if not return_mask:  # a full-frame mask is up to 40 MP of float: only when asked for
        return out
    return out, _full_mask((H, W), found, img.device)


def _match_colour(warped: torch.Tensor, original: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """``warped`` [3, h, w] with each channel's mean and std in ``ring`` [h, w] moved to ``original``'s
    (the gain clamped to [0.5, 2]); unchanged when the ring has under 16 pixels."""
    if int(ring.sum()) < 16:
        return warped
    w, o = warped[:, ring].float(), original[:, ring].float()
    gain = (o.std(1) / w.std(1).clamp_min(1e-3)).clamp(0.5, 2.0)
    return ((warped - w.mean(1)[:, None, None]) * gain[:, None, None] + o.mean(1)[:, None, None]).clamp(-1, 1)
