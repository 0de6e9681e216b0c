"""StyleGAN2 layers with NVlabs StyleGAN2-ADA parameter names and shapes.

Weights are stored as drawn from N(0, 1) and scaled at run time (equalised learning rate), so
pretrained NVlabs tensors load unchanged. Resampling uses the FIR filter buffer
``resample_filter`` ([1, 3, 3, 1] -> normalised 4x4).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from generation.stylegan2.ops import ACTIVATIONS, bias_act, conv2d_resample, modulated_conv2d, setup_filter

DEFAULT_FILTER = (1, 3, 3, 1)
NOISE_MODES = ("random", "const", "none")


class FullyConnectedLayer(nn.Module):
    """``act(x @ (weight * lr_mul / sqrt(in)).T + bias * lr_mul)``: [N, in_features] -> [N, out_features]."""

    def __init__(self, *,
                 in_features: int,             # input width
                 out_features: int,            # output width
                 bias: bool = True,            # learn an additive bias
                 activation: str = "linear",   # one of ops.ACTIVATIONS
                 lr_multiplier: float = 1.0,   # learning-rate multiplier (mapping network: 0.01)
                 bias_init: float = 0.0):      # initial bias (style affines: 1)
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with optional FIR up/downsampling, bias, activation and clamping (discriminator).

    [N, in_channels, H, W] -> [N, out_channels, H*up/down, W*up/down].
    """

    def __init__(self, *,
                 in_channels: int,                                # input channels
                 out_channels: int,                               # output channels
                 kernel_size: int,                                # square kernel width
                 bias: bool = True,                               # learn an additive bias
                 activation: str = "linear",                      # one of ops.ACTIVATIONS
                 up: int = 1,                                     # upsampling factor
                 down: int = 1,                                   # downsampling factor
                 resample_filter: Sequence[int] = DEFAULT_FILTER,  # FIR taps for resampling
                 conv_clamp: float | None = None):                # clamp outputs to +-X (None: off)
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale x so that the mean of its squares along ``dim`` is 1."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: normalised z through an lrelu MLP, broadcast to all
    synthesis layers, optionally truncated towards the tracked average ``w_avg``."""

    def __init__(self, *,
                 z_dim: int,                   # latent width
                 w_dim: int,                   # intermediate latent width
                 num_ws: int,                  # number of ws to broadcast to
                 num_layers: int = 8,          # MLP depth
                 lr_multiplier: float = 0.01,  # learning-rate multiplier of the MLP
                 w_avg_beta: float = 0.995):   # decay of the w_avg moving average
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        widths = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(in_features=widths[i], out_features=widths[i + 1],
                                                        activation="lrelu", lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, update_emas: bool = False) -> torch.Tensor:
        """z: [N, z_dim] (any scale; normalised here). ``c`` must be ``None`` or empty (unconditional).
        Truncation: ``w_avg + psi * (w - w_avg)`` on the first ``truncation_cutoff`` ws (all if None).
        ``update_emas``: move ``w_avg`` towards this batch's mean w (training)."""
        if c is not None and c.numel() > 0:
            raise ValueError("this generator is unconditional (c_dim=0); pass c=None")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            ws = truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)
        return ws


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] -> ``w_avg + psi * (ws - w_avg)`` on ws[:, :cutoff] (all when None)."""
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling x2) + noise + bias + lrelu.

    x [N, in_channels, R/up, R/up], w [N, w_dim] -> [N, out_channels, R, R] (R = resolution).
    """

    def __init__(self, *,
                 in_channels: int,                                # input channels
                 out_channels: int,                               # output channels
                 w_dim: int,                                      # width of w
                 resolution: int,                                 # output resolution R
                 kernel_size: int = 3,                            # square kernel width
                 up: int = 1,                                     # upsampling factor (1 or 2)
                 use_noise: bool = True,                          # add per-pixel noise
                 activation: str = "lrelu",                       # one of ops.ACTIVATIONS
                 resample_filter: Sequence[int] = DEFAULT_FILTER,  # FIR taps for upsampling
                 conv_clamp: float | None = None):                # clamp outputs to +-X (None: off)
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.affine = FullyConnectedLayer(in_features=w_dim, out_features=in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = (torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
                     * self.noise_strength)
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation: [N, in_channels, R, R] -> [N, out_channels, R, R]."""

    def __init__(self, *,
                 in_channels: int,                  # feature channels
                 out_channels: int,                 # image channels
                 w_dim: int,                        # width of w
                 kernel_size: int = 1,              # square kernel width
                 conv_clamp: float | None = None):  # clamp outputs to +-X (None: off)
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(in_features=w_dim, out_features=in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class MinibatchStdLayer(nn.Module):
    """Append the across-group standard deviation of features as extra channels.

    x [N, C, H, W] -> [N, C + num_channels, H, W]. Groups take every (N/G)-th sample; N must be a
    multiple of G = min(group_size, N).
    """

    def __init__(self, *,
                 group_size: int | None,   # samples per group (None: whole batch)
                 num_channels: int = 1):   # number of std channels to append
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g:
            raise ValueError(f"minibatch std: batch size {n} must be a multiple of the group size {g}")
        y = x.reshape(g, n // g, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)   # variance over the group
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])       # [n/g, f]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)   # [n, f, h, w]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
