"""StyleGAN2 training objectives: non-saturating logistic GAN loss, R1 and path-length regularisers,
the EMA generator's decay (:func:`ema_beta`; the average itself is :class:`hdvila.training.EMA`), the
lazy-regularisation optimiser correction, and :class:`StyleGAN2Loss`, the four loss phases of a
training step built on them.

Conventions: images are float [N, C, H, W] in ~[-1, 1]; discriminator outputs are logits [N, 1]
(real > fake); ws are [N, num_ws, w_dim]. Every function returns float32 tensors, whatever the
autocast dtype of the networks, so penalties are summed in full precision.

Both regularisers differentiate a gradient (``create_graph=True``), so backpropagating them needs
the second derivatives of every op inside the networks (the project's ``bias_act``/``upfirdn2d``
support them; see :mod:`generation.stylegan2.ops`).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``softplus(-D(G(z)))`` per sample: logits [N, 1] -> [N, 1]."""
    return F.softplus(-fake_logits.float())


def discriminator_loss(real_logits: torch.Tensor | None, fake_logits: torch.Tensor | None) -> torch.Tensor:
    """Logistic discriminator loss per sample: ``softplus(D(fake)) + softplus(-D(real))``.

    Either side may be ``None`` (they are computed in separate backward passes); logits [N, 1] ->
    [N, 1] (the sum of the given parts).
    """
    parts = []
    if fake_logits is not None:
        parts.append(F.softplus(fake_logits.float()))
    if real_logits is not None:
        parts.append(F.softplus(-real_logits.float()))
    if not parts:
        raise ValueError("discriminator_loss needs real_logits or fake_logits")
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """R1: squared norm of the discriminator's gradient with respect to real images, per sample.

    ``real_images`` [N, C, H, W] must require grad and be the tensor ``real_logits`` [N, 1] was
    computed from (augmentation in between is fine). Returns [N] float32, differentiable with
    respect to the discriminator's parameters (``create_graph=True``). The loss term is
    ``gamma / 2 * penalty.mean()``.
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad (call .requires_grad_() before D)")
    (grads,) = torch.autograd.grad(outputs=real_logits.float().sum(), inputs=real_images, create_graph=True,
                                   only_inputs=True)
    return grads.float().square().sum(dim=[1, 2, 3])


def path_lengths(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Path lengths ``|J_w^T y|`` of the generator, per sample: images [N, C, H, W] made from
    ws [N, num_ws, w_dim] (ws must be part of the graph). Returns [N] float32, differentiable.

    ``y`` is Gaussian noise scaled by ``1/sqrt(H*W)`` so the length does not depend on the
    resolution; the squared gradient is summed over ``w_dim`` and averaged over the ws.
    """
    h, w = images.shape[2], images.shape[3]
    noise = torch.randn_like(images, dtype=torch.float32) / math.sqrt(h * w)
    (grads,) = torch.autograd.grad(outputs=(images.float() * noise).sum(), inputs=ws, create_graph=True,
                                   only_inputs=True)
    return grads.float().square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor) -> torch.Tensor:
    """``(length - pl_mean)^2`` per sample: lengths [N], pl_mean [] (the running mean, detached) -> [N]."""
    return (lengths - pl_mean.detach()).square()


def lazy_regularization_ratio(interval: int) -> float:
    """``c = interval / (interval + 1)`` for a network regularised every ``interval`` steps (0 or
    1: regularised every step, or never, so no correction: 1.0).

    Adam is then run with ``lr * c`` and ``betas ** c``, so that the main and regulariser steps
    together move the weights as fast as one combined step would.
    """
    return interval / (interval + 1) if interval and interval > 1 else 1.0


def ema_beta(batch_size: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Decay of the EMA generator for one step of ``batch_size`` images.

    ``ema_kimg`` is the half-life in thousands of images: after ``ema_kimg * 1000`` images, old
    weights keep half their weight. With ``ema_rampup`` (e.g. 0.05), the half-life is at most
    ``cur_nimg * ema_rampup`` images, so early in training (when ``cur_nimg`` images have been
    shown) the EMA follows the generator closely (beta 0 at the first step: a plain copy).
    Returns beta in [0, 1): ``ema = beta * ema + (1 - beta) * current``.
    """
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup is not None and ema_rampup > 0:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


# ------------------------------------------------------------------------------------------------
# The loss phases of a training step


def clean_grads(params, enabled: bool) -> None:
    """Replace NaN/inf in gradients (not under fp16 loss scaling, whose overflow check needs them)."""
    if not enabled:
        return
    for p in params:
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)


class StyleGAN2Loss:
    """The four loss phases of a training step of ``generation/train_stylegan2.py``, after NVlabs
    StyleGAN2-ADA's ``StyleGAN2Loss.accumulate_gradients(phase, ...)`` (re-implemented from the
    papers' description, Karras et al. 2020):

    - ``Gmain``: non-saturating loss ``softplus(-D(G(z)))`` through a frozen D;
    - ``Greg``: path-length regularisation (lazy: every ``pl_interval`` steps, on ``batch //
      pl_batch_shrink`` samples, weight ``pl_weight * pl_interval``);
    - ``Dmain``: logistic loss ``softplus(D(G(z))) + softplus(-D(x))``, fakes from G without grad;
    - ``Dreg``: R1 on reals (lazy: every ``r1_interval`` steps, weight ``gamma / 2 * r1_interval``).

    Each phase zeroes its optimiser's gradients, accumulates ``gradient_accumulation_steps``
    micro-batches (gradients are synchronised across processes only on the last one, through
    ``accelerator.no_sync``: Accelerate's ``accumulate()`` counts one backward per model per step,
    which does not fit several phases per step) and then steps the optimiser.

    ``G``/``D`` are the prepared (DDP-wrapped when several processes run) modules, ``G`` a
    :class:`GeneratorForTraining`; ``augment`` is applied to every image D sees; ``stats`` a
    :class:`hdvila.training.StepStats` that receives per-sample losses and penalties.
    ``pl_mean`` (a float32 scalar tensor) is the running mean path length, kept here.
    """

    def __init__(self, accelerator, G: nn.Module, D: nn.Module, augment: nn.Module, stats, *, z_dim: int,
                 style_mixing_prob: float, r1_gamma: float, r1_interval: int, pl_weight: float, pl_interval: int,
                 pl_decay: float, pl_batch_shrink: int, pl_mean: float = 0.0):
        self.accelerator, self.G, self.D, self.augment, self.stats = accelerator, G, D, augment, stats
        self.G_raw, self.D_raw = accelerator.unwrap_model(G), accelerator.unwrap_model(D)
        self.z_dim, self.style_mixing_prob = z_dim, style_mixing_prob
        self.r1_gamma, self.r1_interval = r1_gamma, r1_interval
        self.pl_weight, self.pl_interval, self.pl_decay, self.pl_batch_shrink = (pl_weight, pl_interval, pl_decay,
                                                                                  pl_batch_shrink)
        self.pl_mean = torch.tensor(pl_mean, dtype=torch.float32, device=accelerator.device)
        self.pl_active = pl_weight > 0 and pl_interval > 0
        self.r1_active = r1_gamma > 0 and r1_interval > 0

    def phases(self, step: int, train_g: bool) -> list[str]:
        """The phases of training step ``step`` (0-based): the regularisers on their intervals, G's
        only when ``train_g`` (False during ``--d_warmup_steps``)."""
        out = ["Gmain"] if train_g else []
        if train_g and self.pl_active and step % self.pl_interval == 0:
            out.append("Greg")
        out.append("Dmain")
        if self.r1_active and step % self.r1_interval == 0:
            out.append("Dreg")
        return out

    def _sync(self, model: nn.Module, last: bool):
        """No gradient all-reduce for this backward unless it is the last micro-batch."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(model)

    def accumulate_gradients(self, phase: str, real: torch.Tensor, *, batch: int, last: bool,
                             scale: float) -> None:
        """Backpropagate one micro-batch of ``phase``: ``real`` [batch, C, R, R] in [-1, 1];
        every loss is multiplied by ``scale`` (1 / micro-batches per step)."""
        acc, G, D, aug, report = self.accelerator, self.G, self.D, self.augment, self.stats.report
        mix = self.style_mixing_prob
        if phase == "Gmain":
            z = torch.randn([batch, self.z_dim], device=acc.device)
            with self._sync(G, last):
                with acc.autocast():
                    fake, _ = G(z, style_mixing_prob=mix, update_w_avg=True)
                    logits = self.D_raw(aug(fake))  # D frozen and unwrapped: no DDP hooks on it here
                loss = generator_loss(logits)
                acc.backward(loss.mean() * scale)
            report("loss_G", loss)
            report("score_fake", logits)
        elif phase == "Greg":
            z = torch.randn([max(1, batch // self.pl_batch_shrink), self.z_dim], device=acc.device)
            with self._sync(G, last):
                with acc.autocast():
                    fake, ws = G(z, style_mixing_prob=mix)
                lengths = path_lengths(fake, ws)
                self.pl_mean = self.pl_mean.lerp(acc.reduce(lengths.detach().mean(), reduction="mean"), self.pl_decay)
                penalty = path_length_penalty(lengths, self.pl_mean)
                # `fake * 0` keeps every parameter in the graph (DDP expects a gradient for each).
                loss = (penalty.mean() * self.pl_weight + fake[:, 0, 0, 0].float().mean() * 0) * self.pl_interval
                acc.backward(loss * scale)
            report("pl_penalty", penalty)
            report("pl_length", lengths)
        elif phase == "Dmain":
            z = torch.randn([batch, self.z_dim], device=acc.device)
            with torch.no_grad(), acc.autocast():
                fake, _ = self.G_raw(z, style_mixing_prob=mix)
            with acc.no_sync(D):  # the fake half never syncs; the real half's backward does
                with acc.autocast():
                    fake_logits = D(aug(fake.detach()))
                loss_fake = discriminator_loss(None, fake_logits)
                acc.backward(loss_fake.mean() * scale)
            with self._sync(D, last):
                with acc.autocast():
                    real_logits = D(aug(real))
                loss_real = discriminator_loss(real_logits, None)
                acc.backward(loss_real.mean() * scale)
            report("loss_D_fake", loss_fake)
            report("loss_D_real", loss_real)
            report("score_real", real_logits)
            report("sign_real", real_logits.detach().sign())
        elif phase == "Dreg":
            real = real.detach().requires_grad_(True)
            with self._sync(D, last):
                with acc.autocast():
                    real_logits = D(aug(real))
                penalty = r1_penalty(real, real_logits)
                loss = (penalty.mean() * (self.r1_gamma / 2) + real_logits.float().mean() * 0) * self.r1_interval
                acc.backward(loss * scale)
            report("r1_penalty", penalty)
        else:
            raise ValueError(f"unknown phase {phase!r}")

    def run_step(self, step: int, reals: list[torch.Tensor], opt_G, opt_D, *, train_g: bool = True) -> None:
        """All phases of training step ``step`` on the micro-batches ``reals`` (each [B, C, R, R]):
        for each phase, the trained network alone requires grad, its gradients are zeroed, every
        micro-batch is accumulated, and its optimiser steps."""
        clean = self.accelerator.scaler is None
        for phase in self.phases(step, train_g):
            trained, frozen, opt = ((self.G_raw, self.D_raw, opt_G) if phase.startswith("G")
                                    else (self.D_raw, self.G_raw, opt_D))
            frozen.requires_grad_(False)
            trained.requires_grad_(True)
            opt.zero_grad(set_to_none=True)
            for k, real in enumerate(reals):
                self.accumulate_gradients(phase, real, batch=real.shape[0], last=k == len(reals) - 1,
                                          scale=1.0 / len(reals))
            clean_grads(trained.parameters(), clean)
            opt.step()
        self.G_raw.requires_grad_(True)
        self.D_raw.requires_grad_(True)
