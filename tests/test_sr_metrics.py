"""PSNR/SSIM against known answers (mmagic's test values; kornia's docstring example)."""

import math

import pytest
import torch

from generation.superres.metrics import psnr, rgb_to_y, ssim


def _const(v, size=32):
    return torch.full((1, 3, size, size), float(v), dtype=torch.float64)


def test_psnr_known_answers():
    one, two = _const(1), _const(2)
    assert psnr(one, two).item() == pytest.approx(48.1308036, abs=1e-6)
    # mmagic computes the luma in float32; in float64 the value differs in the 6th decimal
    assert psnr(one, two, y_channel=True).item() == pytest.approx(49.4527218, abs=1e-5)
    assert math.isinf(psnr(one, one).item())
    # kornia: psnr(ones(1), 1.2 * ones(1), max_val=2.) == 20
    assert psnr(torch.ones(1, 1, 1, 1), 1.2 * torch.ones(1, 1, 1, 1), data_range=2.0).item() == pytest.approx(20.0)


def test_ssim_known_answers():
    one, two = _const(1), _const(2)
    assert ssim(one, two).item() == pytest.approx(0.9130623, abs=1e-6)
    assert ssim(one, two, y_channel=True).item() == pytest.approx(0.9987801, abs=1e-5)
    assert ssim(one, one).item() == pytest.approx(1.0)


def test_crop_border_and_luma():
    a = torch.rand(2, 3, 24, 24, dtype=torch.float64) * 255
    b = a.clone()
    b[..., :4, :] = 0  # damage only the border
    assert math.isinf(psnr(a, b, crop_border=4)[0].item()) and psnr(a, b)[0].item() < 40
    white = torch.full((1, 3, 1, 1), 255.0, dtype=torch.float64)
    assert rgb_to_y(white).item() == pytest.approx(235.0)  # studio range top
    assert rgb_to_y(torch.zeros(1, 3, 1, 1, dtype=torch.float64)).item() == pytest.approx(16.0)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[..., :8, :8], b[..., :8, :8])
    with pytest.raises(ValueError, match="shape"):
        psnr(a, b[..., :20])
