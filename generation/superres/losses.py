"""Losses and degradations for text-conditioned super-resolution.

- **LR synthesis.** :func:`downsample` is bicubic with antialiasing (``torch.nn.functional.interpolate
  (mode="bicubic", antialias=True)``, the Keys cubic with a = -0.75 widened by the scale factor, which
  is how MATLAB's ``imresize`` downsamples; GLEAN trains and evaluates with that kernel).
  :class:`BlindDegradation` adds optional Gaussian blur, Gaussian noise and JPEG (kornia) for
  real-world inputs.
- **Perceptual.** LPIPS (Zhang et al., CVPR 2018) needs its trunk's ImageNet weights, which
  torchvision downloads; where they are not on disk the stated fallback is a feature-matching loss
  on the frozen StyleGAN2 discriminator's block outputs (as in pix2pixHD's discriminator feature
  loss), which knows the domain's textures. :func:`make_perceptual` says which it chose.
- **Adversarial.** The non-saturating logistic loss of StyleGAN2 against a discriminator initialised
  from the generator's own (GLEAN does the same); :func:`d_logistic_loss` trains it, with an R1
  penalty on reals.
- **Text.** :func:`text_image_loss`: ``1 - cos`` between the HD-VILA image embedding of the output
  and the caption's text embedding (captions dropped for a row are not scored).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """hr [N, 3, H, W] in [-1, 1] -> [N, 3, H/scale, W/scale], antialiased bicubic, clamped to [-1, 1]."""
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image side {h}x{w} is not divisible by the scale {scale}")
    return F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True,
                         align_corners=False).clamp(-1, 1)


def upsample_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: lr [N, 3, h, w] -> [N, 3, h*scale, w*scale] in [-1, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


class BlindDegradation(nn.Module):
    """Random blur (sigma in ``blur``), Gaussian noise (std in ``noise``, on the [-1, 1] scale) and JPEG
    (quality in ``jpeg``) applied to LR images [N, 3, h, w] in [-1, 1], each with probability ``p``.
    A range of ``(0, 0)`` switches a degradation off."""

    def __init__(self, blur: tuple[float, float] = (0.0, 0.0), noise: tuple[float, float] = (0.0, 0.0),
                 jpeg: tuple[float, float] = (0.0, 0.0), p: float = 0.5):
        super().__init__()
        self.blur, self.noise, self.jpeg, self.p = blur, noise, jpeg, p

    @property
    def active(self) -> bool:
        return any(hi > 0 for _, hi in (self.blur, self.noise, self.jpeg))

    def forward(self, lr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.active:
            return lr
        import kornia

        n = lr.shape[0]

        def pick(lo_hi):
            lo, hi = lo_hi
            return lo + (hi - lo) * torch.rand(n, generator=generator), torch.rand(n, generator=generator) < self.p

        out = lr
        if self.blur[1] > 0:
            sigma, on = pick(self.blur)
            sigma = sigma.clamp_min(0.1)
            blurred = torch.stack([kornia.filters.gaussian_blur2d(out[i:i + 1], (5, 5), (float(s), float(s)))[0]
                                   for i, s in enumerate(sigma)])
            out = torch.where(on[:, None, None, None], blurred, out)
        if self.noise[1] > 0:
            std, on = pick(self.noise)
            noise = torch.randn(out.shape, generator=generator) * std[:, None, None, None]
            out = out + noise * on[:, None, None, None]
        if self.jpeg[1] > 0:
            q, on = pick(self.jpeg)
            x01 = ((out + 1) / 2).clamp(0, 1)
            coded = kornia.enhance.jpeg_codec_differentiable(x01, q.clamp(1, 100).to(x01.dtype))
            out = torch.where(on[:, None, None, None], coded * 2 - 1, out)
        return out.clamp(-1, 1)


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 or MSE between sr and hr [N, 3, H, W]."""
    if kind == "l1":
        return (sr - hr).abs().mean()
    if kind == "mse":
        return F.mse_loss(sr, hr)
    raise ValueError(f"pixel loss must be 'l1' or 'mse', got {kind!r}")


def discriminator_features(D: nn.Module, img: torch.Tensor) -> list[torch.Tensor]:
    """The output of every discriminator block for img [N, 3, R, R] in [-1, 1] (highest resolution first)."""
    x, feats = None, []
    for res in D.block_resolutions:
        x, img = getattr(D, f"b{res}")(x, img, force_fp32=True)
        feats.append(x)
    return feats


class DiscriminatorFeatureLoss(nn.Module):
    """Mean L1 between the frozen discriminator's block features of sr and hr, each block weighted
    equally after normalising by the hr feature's mean magnitude. ``D`` is a snapshot: adversarial
    updates of another discriminator do not move this loss."""

    name = "discriminator-features"

    def __init__(self, D: nn.Module):
        super().__init__()
        import copy

        self.D = copy.deepcopy(D).eval().requires_grad_(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = discriminator_features(self.D, hr)
        out = discriminator_features(self.D, sr)
        return sum((a - b).abs().mean() / b.abs().mean().clamp_min(1e-3) for a, b in zip(out, ref)) / len(ref)


class LPIPSLoss(nn.Module):
    name = "lpips"

    def __init__(self, net: str = "alex"):
        super().__init__()
        import lpips

        self.model = lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return self.model(sr, hr).mean()


def lpips_available(net: str = "alex") -> bool:
    """Whether LPIPS can be built without a download: torchvision's ImageNet trunk weights must be in
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    names = {"alex": "alexnet-owt-", "vgg": "vgg16-", "squeeze": "squeezenet1_1-"}
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    folder = home / "hub" / "checkpoints"
    return folder.is_dir() and any(p.name.startswith(names[net]) for p in folder.iterdir())


def make_perceptual(kind: str, D: nn.Module | None) -> nn.Module | None:
    """``kind``: 'auto' (LPIPS when its weights are on disk, else discriminator features), 'lpips',
    'discriminator' or 'none'."""
    if kind == "none":
        return None
    if kind in ("auto", "lpips") and lpips_available():
        return LPIPSLoss()
    if kind == "lpips":
        raise FileNotFoundError("LPIPS needs torchvision's AlexNet weights in the torch hub cache "
                                "(~/.cache/torch/hub/checkpoints/alexnet-owt-*.pth); copy them there or use "
                                "--perceptual discriminator.")
    if D is None:
        raise ValueError("the discriminator-feature perceptual loss needs a discriminator (--discriminator)")
    if kind == "auto":
        logger.info("LPIPS weights not on disk: perceptual loss = discriminator feature matching")
    return DiscriminatorFeatureLoss(D)


def g_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss softplus(-D(G(x))), mean over the batch."""
    return F.softplus(-fake_logits).mean()


def d_logistic_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float = 0.0
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """softplus(D(fake)) + softplus(-D(real)) (+ gamma/2 * |grad D(real)|^2 when ``r1_gamma`` > 0)."""
    real = real.detach().requires_grad_(r1_gamma > 0)
    # one call for both halves: a data-parallel D is called once per backward, as DDP requires
    real_logits, fake_logits = D(torch.cat([real, fake.detach().to(real.dtype)])).split([len(real), len(fake)])
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    stats = {"d_real": real_logits.mean().item(), "d_fake": fake_logits.mean().item()}
    if r1_gamma > 0:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        r1 = grad.square().sum((1, 2, 3)).mean()
        loss = loss + r1_gamma / 2 * r1
        stats["r1"] = r1.item()
    return loss, stats


def text_image_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                    keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``1 - cos`` over rows kept (both inputs [N, D], L2-normalised); 0 when none is kept."""
    cos = (image_embeds * text_embeds).sum(-1)
    if keep is not None:
        if not keep.any():
            return cos.sum() * 0
        cos = cos[keep]
    return (1 - cos).mean()
