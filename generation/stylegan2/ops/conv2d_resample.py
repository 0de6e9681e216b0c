"""2-D convolution with optional FIR upsampling/downsampling (``conv2d_resample``).

Defined as: ``upfirdn2d(x, f, up, padding+)`` (zero insertion + FIR low-pass, gain up^2) ->
``conv2d(w)`` with no padding -> ``upfirdn2d(f, down)``, where ``padding+`` is the user padding
plus what keeps the output aligned (``[(fw+up-1)//2, (fw-up)//2]`` for up,
``[(fw-down+1)//2, (fw-down)//2]`` for down). :func:`_conv2d_resample_generic` spells that out;
:func:`conv2d_resample` computes the same result faster by commuting the filter and the
convolution: transposed strided convolution for upsampling, strided convolution for
downsampling, and 1x1 convolutions on the smaller side of the resampling.

``flip_weight=True`` means correlation (what ``torch.nn.functional.conv2d`` does);
``flip_weight=False`` means true convolution. StyleGAN2 layers use ``flip_weight = (up == 1)``,
which is what pretrained weights expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generation.stylegan2.ops.upfirdn2d import IntOrPair, _pair, _parse_padding, filter_size, upfirdn2d


def _resample_padding(f, up: int, down: int, padding: IntOrPair) -> list[int]:
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return [px0, px1, py0, py1]


def _check(x: torch.Tensor, w: torch.Tensor, up, down, groups: int) -> tuple[int, int]:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects x [N, C, H, W] and w [O, C/groups, kh, kw], got "
                         f"{tuple(x.shape)} and {tuple(w.shape)}")
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"channel mismatch: x has {x.shape[1]} channels, w {tuple(w.shape)} with groups={groups}")
    up, down = _pair(up, "up"), _pair(down, "down")
    if up[0] != up[1] or down[0] != down[1] or up[0] < 1 or down[0] < 1:
        raise ValueError(f"conv2d_resample supports equal integer factors >= 1 per axis, got up={up}, down={down}")
    return up[0], down[0]


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding: IntOrPair = 0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False,
                    impl: str = "auto") -> torch.Tensor:
    """Convolve x [N, C, H, W] with w [O, C/groups, kh, kw], upsampling by ``up`` before or
    downsampling by ``down`` after, with FIR filter ``f`` (from ``setup_filter``; needed when
    resampling). Returns [N, O, H', W'] with H' = (H*up + 2*padding - kh + 1) // down for the
    usual ``padding = kh // 2`` and even sizes (e.g. up=2: 2H; down=2: H/2).
    """
    up, down = _check(x, w, up, down, groups)
    if (up > 1 or down > 1) and f is None:
        raise ValueError("conv2d_resample needs a filter f when up or down > 1")
    out_ch, in_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = _resample_padding(f, up, down, padding)
    conv_w = w if flip_weight or up > 1 else w.flip([2, 3])  # what F.conv2d correlates with (up > 1: unused)

    if kh == 1 and kw == 1 and down > 1 and up == 1:  # filter+downsample first: the conv runs small
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return F.conv2d(x, conv_w, groups=groups)
    if kh == 1 and kw == 1 and up > 1 and down == 1:  # conv first, then upsample (a 1x1 kernel needs no flip)
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up, flip_filter=flip_filter, impl=impl)
    if down > 1 and up == 1:  # filter, then strided conv
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter, impl=impl)
        return F.conv2d(x, conv_w, stride=down, groups=groups)
    if up > 1:
        # Zero insertion followed by a true convolution with w' is a transposed convolution with w'
        # (w' = w unless flip_weight), whose output already includes kh-1 rows of full padding
        # before and kh-up after; the FIR filter then gets the rest.
        tw = w.flip([2, 3]) if flip_weight else w
        if groups == 1:
            tw = tw.transpose(0, 1)
        else:
            tw = tw.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            tw = tw.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        cx, cy = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)  # crop done by the transposed conv
        x = F.conv_transpose2d(x, tw, stride=up, padding=[cy, cx], groups=groups)
        x = upfirdn2d(x, f, padding=[px0 + cx, px1 + cx, py0 + cy, py1 + cy], gain=up * up,
                      flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return F.conv2d(x, conv_w, padding=[py0, px0], groups=groups)
    return _conv2d_resample_generic(x, w, f, up, down, padding, groups, flip_weight, flip_filter, impl)


def _conv2d_resample_generic(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int = 1,
                             down: int = 1, padding: IntOrPair = 0, groups: int = 1, flip_weight: bool = True,
                             flip_filter: bool = False, impl: str = "auto") -> torch.Tensor:
    """The defining (slow) form of :func:`conv2d_resample`; tests check the fast paths against it."""
    up, down = _check(x, w, up, down, groups)
    pad = _resample_padding(f, up, down, padding)
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up * up, flip_filter=flip_filter, impl=impl)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
