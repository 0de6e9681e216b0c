"""PSNR and SSIM as super-resolution papers report them.

Conventions (stated because libraries differ): images are compared on the 0-255 scale
(``data_range`` 255) in float64, after cropping ``crop_border`` pixels from every side (SR papers
crop ``scale`` pixels). ``y_channel=True`` compares the BT.601 luma of studio range,
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for RGB in 0-255 (MATLAB's ``rgb2ycbcr``, as
BasicSR and mmagic do). SSIM (Wang et al., 2004) uses an 11x11 Gaussian window of sigma 1.5 over the
*valid* region (no padding), ``K1 = 0.01``, ``K2 = 0.03``, averaged over channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Y_WEIGHTS = (65.481, 128.553, 24.966)


def to_255(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> 0-255 float64, rounded like a saved 8-bit image."""
    return ((x.detach().double().clamp(-1, 1) + 1) * 127.5).round()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """x [N, 3, H, W] RGB in 0-255 -> [N, 1, H, W] BT.601 luma (16-235)."""
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) / 255.0 + 16.0


def _prepare(a: torch.Tensor, b: torch.Tensor, crop_border: int, y_channel: bool):
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.double(), b.double()
    if a.ndim == 3:
        a, b = a[None], b[None]
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        a, b = rgb_to_y(a), rgb_to_y(b)
    return a, b


def psnr(a: torch.Tensor, b: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 255.0) -> torch.Tensor:
    """PSNR in dB per image: a, b [N, 3, H, W] (or [3, H, W]) on the 0-``data_range`` scale -> [N]
    (inf for identical images)."""
    a, b = _prepare(a, b, crop_border, y_channel)
    mse = (a - b).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 255.0) -> torch.Tensor:
    """SSIM per image: a, b [N, C, H, W] (or [C, H, W]) on the 0-``data_range`` scale -> [N].
    Images smaller than the 11x11 window (after cropping) raise ``ValueError``."""
    a, b = _prepare(a, b, crop_border, y_channel)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels after cropping, got {tuple(a.shape[-2:])}")
    c = a.shape[1]
    win = _gaussian_window().to(a.device).expand(c, 1, 11, 11)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    filt = lambda x: F.conv2d(x, win, groups=c)  # noqa: E731  (valid region: no padding)
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def psnr_unit(a: torch.Tensor, b: torch.Tensor, **kwargs) -> torch.Tensor:
    """PSNR of [-1, 1] images after rounding both to 8 bits (what a saved PNG would score)."""
    return psnr(to_255(a), to_255(b), **kwargs)


def ssim_unit(a: torch.Tensor, b: torch.Tensor, **kwargs) -> torch.Tensor:
    """SSIM of [-1, 1] images after rounding both to 8 bits."""
    return ssim(to_255(a), to_255(b), **kwargs)


def mean_finite(x: torch.Tensor) -> float:
    """Mean over finite entries (identical images give inf PSNR), nan when there are none."""
    x = x[torch.isfinite(x)]
    return float(x.mean()) if x.numel() else math.nan
