"""Fused bias + activation + gain + clamp (``bias_act``), the NVlabs StyleGAN2 convention.

``y = clamp(act(x + b) * gain, -clamp, clamp)`` with the bias broadcast along ``dim``.
Defaults per activation (alpha for ``lrelu``, gain keeping the signal's magnitude) follow
StyleGAN2-ADA so that pretrained weights behave the same.

The compiled path computes forward, first and second derivatives with one kernel; its autograd
functions call that kernel again in their backward passes, so first and second order gradients
(R1 and path-length regularisation) work. Third order is not supported on that path (an error
is raised); the reference path supports any order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from generation.stylegan2.ops import _build


@dataclass(frozen=True)
class Activation:
    index: int  # id in csrc/sg2_math.h
    fn: Callable[[torch.Tensor, float], torch.Tensor]  # reference implementation (x, alpha) -> y
    def_alpha: float  # default alpha (lrelu slope)
    def_gain: float  # default gain


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(0, lambda x, a: x, 0.0, 1.0),
    "relu": Activation(1, lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(2, lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(3, lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(4, lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(5, lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(6, lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(7, lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(8, lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
             impl: str = "auto") -> torch.Tensor:
    """``clamp(act(x + b) * gain)``.

    x: any shape, float; b: [x.shape[dim]] or ``None``; act: one of :data:`ACTIVATIONS`;
    alpha/gain: ``None`` for the activation's default (lrelu alpha 0.2; gain sqrt(2) for relu,
    lrelu and swish, else 1); clamp: ``None`` (or negative) for no clamping, else output values
    are limited to [-clamp, clamp]. Returns a tensor of x's shape and dtype.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = -1.0 if clamp is None else float(clamp)
    dim = dim % x.ndim if x.ndim else 0
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias must be [{x.shape[dim]}] (x.shape[{dim}]), got {tuple(b.shape)}")
    if act == "linear" and b is None and gain == 1 and clamp < 0:
        return x

    module = _build.resolve(impl, "bias_act", x)
    if module is not None:
        bias = b.to(x.dtype) if b is not None else x.new_empty([0])
        return _BiasAct.apply(x, bias, (module, spec.index, alpha, gain, clamp, dim))
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(x, b, dim, spec: Activation, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _sum_to_bias(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.sum(dim=[i for i in range(t.ndim) if i != dim])


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, params):  # type: ignore[override]
        module, index, alpha, gain, clamp, dim = params
        x = x.contiguous()
        ctx.save_for_backward(x, b)
        ctx.params = params
        return module.bias_act(x, b, x.new_empty([0]), 0, index, alpha, gain, clamp, dim)

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        x, b = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dx = _BiasActGrad.apply(dy, x, b, ctx.params)
        if ctx.needs_input_grad[1] and b.numel():
            db = _sum_to_bias(dx, ctx.params[-1])
        return (dx if ctx.needs_input_grad[0] else None), db, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * d/dx bias_act(x); its own backward gives second-order gradients."""

    @staticmethod
    def forward(ctx, dy, x, b, params):  # type: ignore[override]
        module, index, alpha, gain, clamp, dim = params
        ctx.save_for_backward(dy, x, b)
        ctx.params = params
        return module.bias_act(x, b, dy.contiguous(), 1, index, alpha, gain, clamp, dim)

    @staticmethod
    @once_differentiable
    def backward(ctx, ddx):  # type: ignore[override]
        dy, x, b = ctx.saved_tensors
        module, index, alpha, gain, clamp, dim = ctx.params
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:  # dx is linear in dy
            d_dy = module.bias_act(x, b, ddx.contiguous(), 1, index, alpha, gain, clamp, dim)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            d_x = module.bias_act(x, b, (ddx * dy).contiguous(), 2, index, alpha, gain, clamp, dim)
            if ctx.needs_input_grad[2] and b.numel():
                d_b = _sum_to_bias(d_x, dim)
        return d_dy, (d_x if ctx.needs_input_grad[1] else None), d_b, None
