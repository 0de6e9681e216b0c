"""Pixel conventions of HD-VILA, shared by the model and the processor.

The model reads *normalised pixels*: RGB on the 0-255 scale, minus ``PIXEL_MEAN``, divided by
``PIXEL_STD`` (per channel), which is what the released model was trained on. Elsewhere in the
project images are float in [-1, 1] (:mod:`hdvila.tensors`); :func:`unit_to_pixel_values` converts.
All functions here are differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _channel_view(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(3, 1, 1)


def normalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [0, 255] -> normalised pixels (roughly [-2.2, 2.7])."""
    return (x - _channel_view(PIXEL_MEAN, x)) / _channel_view(PIXEL_STD, x)


def denormalize_pixels(x: torch.Tensor) -> torch.Tensor:
    """Normalised pixels [..., 3, H, W] -> RGB in [0, 255] (not clamped)."""
    return x * _channel_view(PIXEL_STD, x) + _channel_view(PIXEL_MEAN, x)


def unit_to_pixel_values(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB in [-1, 1] (the project's image convention) -> normalised pixels."""
    return normalize_pixels((x + 1.0) * 127.5)


def resize_crop(x: torch.Tensor, resize_hw: tuple[int, int], crop_hw: tuple[int, int],
                top: int | None = None, left: int | None = None) -> torch.Tensor:
    """Resize [N, C, H, W] to ``resize_hw`` (bilinear, antialiased when shrinking) and crop ``crop_hw``
    at (``top``, ``left``), centred when those are None. Values keep their range."""
    if tuple(x.shape[-2:]) != tuple(resize_hw):
        x = F.interpolate(x, size=tuple(resize_hw), mode="bilinear", align_corners=False, antialias=True)
    rh, rw = resize_hw
    ch, cw = crop_hw
    if ch > rh or cw > rw:
        raise ValueError(f"crop {crop_hw} larger than resized frame {resize_hw}")
    top = (rh - ch) // 2 if top is None else top
    left = (rw - cw) // 2 if left is None else left
    return x[..., top:top + ch, left:left + cw]
