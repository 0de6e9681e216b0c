"""One training step's losses for text-conditioned SR: the SR network's loss and the discriminator's.

``SRObjective.sr_loss(batch)`` makes the LR input from the HR batch (antialiased bicubic, then the
optional blind degradations), drops captions with probability ``text_drop``, runs the network on
the frozen latent bank, and sums the weighted losses; ``d_loss`` trains the discriminator on the
same step's output. Every weight is a field of :class:`SRLossWeights` (a training flag each).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from generation.superres.losses import (
    BlindDegradation,
    d_logistic_loss,
    downsample,
    g_adversarial_loss,
    pixel_loss,
    text_image_loss,
)


@dataclass
class SRLossWeights:
    pixel: float = 1.0            # L1 or MSE to the HR image
    pixel_kind: str = "l1"        # 'l1' or 'mse'
    perceptual: float = 0.1       # LPIPS, or discriminator features where LPIPS weights are absent
    adversarial: float = 0.01     # non-saturating GAN loss (GLEAN: 1e-2)
    text: float = 0.1             # 1 - cos(HD-VILA image embedding of the output, caption embedding)
    r1_gamma: float = 0.05        # R1 on reals for the discriminator (0: off)


class SRObjective(nn.Module):
    """Holds the frozen parts (generator, HD-VILA, perceptual net) beside the trained ones.

    ``sr``: :class:`~generation.superres.modeling_sr.SRModel`; ``G``: the StyleGAN2 generator (the
    latent bank); ``D``: the discriminator trained beside (None: no adversarial loss); ``hdvila``:
    an :class:`~hdvila.HDVILAModel` for the text loss (None: no text loss).
    """

    def __init__(self, sr: nn.Module, G: nn.Module, *, D: nn.Module | None, perceptual: nn.Module | None,
                 hdvila: nn.Module | None, weights: SRLossWeights, text_drop: float = 0.1,
                 degradation: BlindDegradation | None = None):
        super().__init__()
        self.sr, self.G, self.D, self.perceptual, self.hdvila = sr, G, D, perceptual, hdvila
        self.w, self.text_drop = weights, text_drop
        self.degradation = degradation or BlindDegradation()
        self.scale = sr.config.scale

    def make_lr(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """hr [N, 3, R, R] -> LR [N, 3, R/scale, R/scale] in [-1, 1]."""
        return self.degradation(downsample(hr, self.scale), generator)

    def sr_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        """batch: ``hr`` [N, 3, R, R] in [-1, 1], ``text`` [N, D] (optional). Returns (loss, stats, sr)."""
        hr = batch["hr"]
        lr = self.make_lr(hr, generator)
        text = batch.get("text")
        keep = None
        if text is not None:
            keep = torch.rand(hr.shape[0], generator=generator).to(hr.device) >= self.text_drop
        sr = self.sr(lr, self.G, text, keep_text=keep)
        w = self.w
        stats = {}
        loss = hr.new_zeros(())
        if w.pixel:
            stats["pixel"] = pixel_loss(sr, hr, w.pixel_kind)
            loss = loss + w.pixel * stats["pixel"]
        if w.perceptual and self.perceptual is not None:
            stats["perceptual"] = self.perceptual(sr, hr)
            loss = loss + w.perceptual * stats["perceptual"]
        if w.adversarial and self.D is not None:
            stats["adversarial"] = g_adversarial_loss(self.D(sr))
            loss = loss + w.adversarial * stats["adversarial"]
        if w.text and self.hdvila is not None and text is not None:
            image_embeds = self.hdvila.get_image_features(sr.clamp(-1, 1), unit_range=True)
            stats["text"] = text_image_loss(image_embeds, text.to(image_embeds.dtype), keep)
            loss = loss + w.text * stats["text"]
        stats["loss"] = loss
        return loss, {k: v.detach() for k, v in stats.items()}, sr

    def d_loss(self, sr: torch.Tensor, hr: torch.Tensor, D: nn.Module | None = None):
        """The discriminator's logistic loss (+ R1) on this step's output: (loss, stats). ``D``: the
        discriminator to train (e.g. its data-parallel wrapper; default ``self.D``)."""
        loss, stats = d_logistic_loss(D if D is not None else self.D, hr, sr, self.w.r1_gamma)
        return loss, {f"{k}": torch.tensor(v) for k, v in stats.items()} | {"loss_D": loss.detach()}
