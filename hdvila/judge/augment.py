"""Light degradations so the judge also reads generated images: blur, noise, JPEG, small shifts."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from PIL import Image

from hdvila.tensors import pil_to_tensor, to_pil


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = 2
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius,) * 4, mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of one image [1, 3, H, W] in [-1, 1] (PIL, 4:2:0 like most encoders)."""
    buf = io.BytesIO()
    to_pil(x).save(buf, format="JPEG", quality=quality)
    return pil_to_tensor(Image.open(buf)).unsqueeze(0)


def degrade(images: torch.Tensor, generator: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    """Randomly degrade a batch [N, 3, H, W] in [-1, 1]; returns the same shape and range.

    Per image: shift by up to ``max_shift`` px (p=0.5, edges replicated), Gaussian blur with sigma in
    [0.3, 0.6] (p=0.25), JPEG quality 50-95 (p=0.3), Gaussian noise with std up to 0.06 (p=0.4).
    """
    out = []
    n, _, h, w = images.shape
    r = torch.rand(n, 4, generator=generator)
    for i in range(n):
        x = images[i: i + 1]
        if r[i, 0] < 0.5:
            dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
            p = max_shift
            x = F.pad(x, (p, p, p, p), mode="replicate")[:, :, p + dy: p + dy + h, p + dx: p + dx + w]
        if r[i, 1] < 0.25:
            x = _blur(x, 0.3 + 0.3 * float(torch.rand(1, generator=generator)))
        if r[i, 2] < 0.3:
            x = _jpeg(x, int(torch.randint(50, 96, (1,), generator=generator)))
        if r[i, 3] < 0.4:
            x = x + torch.randn(x.shape, generator=generator) * 0.06 * float(torch.rand(1, generator=generator))
        out.append(x.clamp(-1, 1))
    return torch.cat(out)
