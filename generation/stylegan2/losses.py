"""StyleGAN2 training objectives: non-saturating logistic GAN loss, R1 and path-length regularisers,
the EMA rule for the sampling generator, and the lazy-regularisation optimiser correction.

Conventions: images are float [N, C, H, W] in ~[-1, 1]; discriminator outputs are logits [N, 1]
(real > fake); ws are [N, num_ws, w_dim]. Every function returns float32 tensors, whatever the
autocast dtype of the networks, so penalties are summed in full precision.

Both regularisers differentiate a gradient (``create_graph=True``), so backpropagating them needs
the second derivatives of every op inside the networks (the project's ``bias_act``/``upfirdn2d``
support them; see :mod:`generation.stylegan2.ops`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """Move every parameter of ``ema_model`` towards ``model``'s (``ema = beta*ema + (1-beta)*p``)
    and copy the buffers (w_avg, noise constants) as they are. Both must have the same structure."""
    for p_ema, p in zip(ema_model.parameters(), model.parameters()):
        p_ema.copy_(p.detach().to(p_ema.dtype).lerp(p_ema, beta))
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b.detach())
