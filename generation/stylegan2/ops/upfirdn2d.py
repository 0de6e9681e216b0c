"""Upsample, FIR-filter and downsample 2-D images in one op (``upfirdn2d``), with helpers.

Semantics (the reference path defines them; the compiled kernels match it):

1. upsample by inserting ``up - 1`` zeros after every sample (per axis),
2. pad with zeros by ``padding = [x0, x1, y0, y1]`` (negative values crop),
3. convolve with the FIR filter ``f`` (true convolution; ``flip_filter=True`` gives correlation)
   scaled by ``gain`` (``gain ** 0.5`` per axis for a separable 1-D filter), keeping only
   positions where the filter fits entirely,
4. keep every ``down``-th sample (per axis).

Output size per axis: ``(in * up + pad0 + pad1 - taps) // down + 1``.

Filters are prepared with :func:`setup_filter` (the NVlabs convention: ``[1, 3, 3, 1]`` becomes
its normalised 4x4 outer product). The compiled path's backward pass is again ``upfirdn2d``
(with up/down swapped, the filter flipped and the padding adjusted), so gradients of every order
use the compiled kernel.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from generation.stylegan2.ops import _build

IntOrPair = int | Sequence[int]


def setup_filter(f, device: torch.device | str | None = None, normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn filter taps into the tensor the ops expect.

    ``f``: ``None`` (identity), a scalar, a 1-D sequence of taps (e.g. ``[1, 3, 3, 1]``) or a 2-D
    array. Returns float32 ``[fh, fw]``, or ``[fw]`` for a separable filter (1-D taps with at least
    8 entries, or ``separable=True``). ``normalize`` makes the taps sum to 1; ``gain`` scales the
    whole filter (``gain ** 0.5`` per axis if separable).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a scalar, 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("a separable filter must be 1-D")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device) if device is not None else f


def _pair(v: IntOrPair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair [x, y], got {v}")
    return v


def _parse_padding(padding: IntOrPair) -> tuple[int, int, int, int]:
    """int -> all sides; [px, py] -> both sides per axis; [x0, x1, y0, y1] as given."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = tuple(int(i) for i in padding)
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [px, py] or [x0, x1, y0, y1], got {p}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(fw, fh) of a filter from :func:`setup_filter` (``None`` counts as 1x1)."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[-1], f.shape[-2]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: IntOrPair = 1, down: IntOrPair = 1,
              padding: IntOrPair = 0, flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images (see module docstring).

    x: [N, C, H, W] float (any range); f: filter from :func:`setup_filter` ([fh, fw] or [fw]) or
    ``None``. Returns [N, C, (H*up_y + y0 + y1 - fh) // down_y + 1, (W*up_x + x0 + x1 - fw) // down_x + 1].
    ``impl``: 'auto', 'ref' or 'compiled' (see :mod:`generation.stylegan2.ops._build`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be [fh, fw] or separable [fw], got shape {tuple(f.shape)}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    pad = _parse_padding(padding)
    fw, fh = filter_size(f)
    _, _, h, w = x.shape
    if w * upx + pad[0] + pad[1] < fw or h * upy + pad[2] + pad[3] < fh:
        raise ValueError(f"upfirdn2d: input {h}x{w} (up {upy}x{upx}, padding {pad}) "
                         f"is smaller than the {fh}x{fw} filter")

    module = _build.resolve(impl, "upfirdn2d", x)
    if module is not None and not f.requires_grad:
        kernel = _kernel_2d(f, flip_filter, gain, x.dtype)
        return _UpFirDn2d.apply(x, kernel, (module, upx, upy, downx, downy, *pad))
    return _upfirdn2d_ref(x, f, upx, upy, downx, downy, pad, flip_filter, gain)


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
                   pad: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    n, c, h, w = x.shape
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    f = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if not flip_filter:  # conv2d correlates; flipping makes it a true convolution
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
    return x[:, :, ::downy, ::downx]


def _kernel_2d(f: torch.Tensor, flip_filter: bool, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """The [fh, fw] correlation kernel the compiled path applies: gain folded in, flipped unless
    ``flip_filter``; float64 for float64 inputs, else float32 (the kernels accumulate in that)."""
    k = f.detach().to(torch.float64 if dtype == torch.float64 else torch.float32)
    k = torch.outer(k, k) * gain if k.ndim == 1 else k * gain
    return (k if flip_filter else k.flip([0, 1])).contiguous()


class _UpFirDn2d(torch.autograd.Function):
    """Compiled upfirdn2d; the gradient is another upfirdn2d, so every order is differentiable."""

    @staticmethod
    def forward(ctx, x, kernel, params):  # type: ignore[override]
        module, upx, upy, downx, downy, px0, px1, py0, py1 = params
        y = module.upfirdn2d(x.contiguous(), kernel, upx, upy, downx, downy, px0, px1, py0, py1)
        ctx.save_for_backward(kernel)
        ctx.params = params
        ctx.in_hw = x.shape[2:]
        ctx.out_hw = y.shape[2:]
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        (kernel,) = ctx.saved_tensors
        module, upx, upy, downx, downy, px0, px1, py0, py1 = ctx.params
        (ih, iw), (oh, ow) = ctx.in_hw, ctx.out_hw
        kh, kw = kernel.shape
        # Adjoint: zero-insert by `down`, full correlation with the flipped kernel, crop the
        # padding, keep every `up`-th sample.
        grad_pad = (kw - px0 - 1, iw * upx - ow * downx + px0 - upx + 1,
                    kh - py0 - 1, ih * upy - oh * downy + py0 - upy + 1)
        dx = _UpFirDn2d.apply(dy, kernel.flip([0, 1]).contiguous(), (module, downx, downy, upx, upy, *grad_pad))
        return dx, None, None


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: IntOrPair = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """FIR-filter x [N, C, H, W] keeping its size (plus ``padding``): [N, C, H, W] -> [N, C, H, W]."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: IntOrPair = 2, padding: IntOrPair = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample x [N, C, H, W] -> [N, C, H*up, W*up] with FIR filter ``f`` (gain multiplied by up^2
    so a constant image stays constant away from the borders)."""
    upx, upy = _pair(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: IntOrPair = 2, padding: IntOrPair = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Downsample x [N, C, H, W] -> [N, C, H//down, W//down] after low-pass filtering with ``f``."""
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
