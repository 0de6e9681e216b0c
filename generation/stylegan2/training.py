"""StyleGAN2 training pieces for ``generation/train_stylegan2.py``: the module DDP wraps for G, the
run's counters, and the loss as four phases driven by one loop.

The phases follow NVlabs StyleGAN2-ADA's ``StyleGAN2Loss.accumulate_gradients(phase, ...)``
(re-implemented from the papers' description, Karras et al. 2020):

- ``Gmain``: non-saturating loss ``softplus(-D(G(z)))`` through a frozen D;
- ``Greg``: path-length regularisation (lazy: every ``pl_interval`` steps, on ``batch //
  pl_batch_shrink`` samples, weight ``pl_weight * pl_interval``);
- ``Dmain``: logistic loss ``softplus(D(G(z))) + softplus(-D(x))``, fakes from G without grad;
- ``Dreg``: R1 on reals (lazy: every ``r1_interval`` steps, weight ``gamma / 2 * r1_interval``).

Each phase zeroes its optimiser's gradients, accumulates ``gradient_accumulation_steps``
micro-batches (gradients are synchronised across processes only on the last one, through
``accelerator.no_sync``: Accelerate's ``accumulate()`` counts one backward per model per step, which
does not fit several phases per step) and then steps the optimiser.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from generation.stylegan2 import losses as L

STATE_FORMAT = 2  # 1: the step was stored as "global_step"
# What the loop reports every step (StepStats names: always part of the cross-process reduction).
STAT_NAMES = ("loss_G", "loss_D_fake", "loss_D_real", "score_real", "score_fake", "sign_real", "r1_penalty",
              "pl_penalty", "pl_length")


class GeneratorForTraining(nn.Module):
    """The module DDP wraps for G: one forward = mapping (+ style mixing) + synthesis.

    forward(z [N, z_dim]) -> (images [N, C, R, R] in ~[-1, 1], ws [N, num_ws, w_dim] float32).
    The mapping network runs outside autocast so ws (the path-length regulariser differentiates
    with respect to them) stay float32.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, style_mixing_prob: float = 0.0, update_w_avg: bool = False,
                noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        G = self.generator
        with torch.autocast(device_type=z.device.type, enabled=False):
            ws = G.mapping(z.float(), None, update_emas=update_w_avg)
            if style_mixing_prob > 0 and ws.shape[1] > 1 and float(torch.rand(())) < style_mixing_prob:
                cutoff = int(torch.randint(1, ws.shape[1], ()))
                ws2 = G.mapping(torch.randn_like(z, dtype=torch.float32), None)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return G.synthesis(ws, noise_mode=noise_mode), ws


@dataclass
class TrainState:
    """Counters saved in every checkpoint (``training_state.json``) beside Accelerate's state."""

    step: int = 0
    cur_nimg: int = 0
    pl_mean: float = 0.0
    g_frozen_until: int = 0  # --d_warmup_steps: G is not updated before this step
    ema_rampup: bool = True  # off for a run started from model folders (no image count to ramp over)
    ada: dict | None = None
    model: dict = field(default_factory=dict)  # the run's MODEL_KEYS settings, checked on resume
    format: int = STATE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_counters(self, saved: dict[str, Any]) -> None:
        """Take the counters of a checkpoint's training state (``load_training_state``); the model
        settings stay this run's."""
        self.step, self.cur_nimg, self.pl_mean = saved["step"], saved["cur_nimg"], saved["pl_mean"]
        self.g_frozen_until, self.ema_rampup = saved.get("g_frozen_until", 0), saved.get("ema_rampup", True)
        self.ada = saved.get("ada")


def adam_settings(lr: float, interval: int, betas: tuple[float, float], eps: float) -> dict[str, Any]:
    """Adam's hyperparameters for a network regularised every ``interval`` steps: ``lr * c`` and
    ``betas ** c`` with ``c = interval / (interval + 1)`` (NVlabs' lazy-regularisation correction)."""
    c = L.lazy_regularization_ratio(interval)
    return {"lr": lr * c, "betas": (betas[0] ** c, betas[1] ** c), "eps": eps}


def clean_grads(params, enabled: bool) -> None:
    """Replace NaN/inf in gradients (not under fp16 loss scaling, whose overflow check needs them)."""
    if not enabled:
        return
    for p in params:
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)


class StyleGAN2Loss:
    """The four loss phases of a training step (module docstring).

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
                loss = L.generator_loss(logits)
                acc.backward(loss.mean() * scale)
            report("loss_G", loss)
            report("score_fake", logits)
        elif phase == "Greg":
            z = torch.randn([max(1, batch // self.pl_batch_shrink), self.z_dim], device=acc.device)
            with self._sync(G, last):
                with acc.autocast():
                    fake, ws = G(z, style_mixing_prob=mix)
                lengths = L.path_lengths(fake, ws)
                self.pl_mean = self.pl_mean.lerp(acc.reduce(lengths.detach().mean(), reduction="mean"), self.pl_decay)
                penalty = L.path_length_penalty(lengths, self.pl_mean)
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
                loss_fake = L.discriminator_loss(None, fake_logits)
                acc.backward(loss_fake.mean() * scale)
            with self._sync(D, last):
                with acc.autocast():
                    real_logits = D(aug(real))
                loss_real = L.discriminator_loss(real_logits, None)
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
                penalty = L.r1_penalty(real, real_logits)
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


@torch.no_grad()
def sample_grid(G_ema: nn.Module, z: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Images of G_ema for the fixed z [N, z_dim] (truncation 1, constant noise) as one grid
    [3, H', W'] in [-1, 1]."""
    from hdvila.tensors import image_grid

    was_training = G_ema.training
    G_ema.eval()
    imgs = torch.cat([G_ema(z[i:i + batch], noise_mode="const", truncation_psi=1.0).float().cpu()
                      for i in range(0, len(z), batch)])
    G_ema.train(was_training)
    return image_grid(imgs.clamp(-1, 1))


__all__ = ["GeneratorForTraining", "STAT_NAMES", "StyleGAN2Loss", "TrainState", "adam_settings", "clean_grads",
           "sample_grid"]
