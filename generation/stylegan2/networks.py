"""StyleGAN2 generator and discriminator, state-dict compatible with NVlabs StyleGAN2-ADA.

``Generator(config).state_dict()`` has the keys and shapes of NVlabs ``G_ema.state_dict()``
(``mapping.fc{i}.*``, ``mapping.w_avg``, ``synthesis.b{res}.{const,conv0,conv1,torgb}.*``...),
and ``Discriminator(config).state_dict()`` those of ``D.state_dict()`` (``b{res}.{fromrgb,conv0,
conv1,skip}.*``, ``b4.{conv,fc,out}.*``), for any resolution and channel configuration.
Channels per resolution: ``min(channel_base // res, channel_max)``.

Images are float NCHW in [-1, 1] (RGB for 3 channels). Blocks at the ``num_fp16_res`` highest
resolutions run in float16 on CUDA only; on CPU everything runs in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from generation.stylegan2.config import DiscriminatorConfig, StyleGAN2Config
from generation.stylegan2.layers import (
    DEFAULT_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    MappingNetwork,
    MinibatchStdLayer,
    SynthesisLayer,
    ToRGBLayer,
)
from generation.stylegan2.ops import downsample2d, setup_filter, upsample2d
from hdvila.modeling_utils import PretrainedModel


def _channels(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


def _fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Blocks at this resolution and above use fp16 (never below 8px)."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32


# ------------------------------------------------------------------------------------------------
# Generator


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | 2x-upsampling conv0) -> conv1 -> ToRGB.

    x [N, in_channels, R/2, R/2] (None for the 4x4 block), img [N, img_channels, R/2, R/2] or None,
    ws [N, num_conv + num_torgb, w_dim] -> (x [N, out_channels, R, R], img [N, img_channels, R, R] or None).
    """

    def __init__(self, *,
                 in_channels: int,               # channels of the previous block, 0 for the first
                 out_channels: int,              # channels of this block
                 w_dim: int,                     # width of w
                 resolution: int,                # output resolution R
                 img_channels: int,              # image channels
                 is_last: bool,                  # last block (always has ToRGB)
                 architecture: str = "skip",     # 'orig', 'skip' or 'resnet'
                 conv_clamp: float | None = None,  # clamp conv outputs to +-X (None: off)
                 use_fp16: bool = False):        # run in float16 on CUDA
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(DEFAULT_FILTER))
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp)
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels=in_channels, out_channels=out_channels, up=2, **layer)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(in_channels=out_channels, out_channels=out_channels, **layer)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(in_channels=out_channels, out_channels=img_channels, w_dim=w_dim,
                                    conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels=in_channels, out_channels=out_channels, kernel_size=1, bias=False, up=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str = "const",
                force_fp32: bool = False,
                fused_modconv: bool | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device)
        if fused_modconv is None:
            # Inference: one grouped conv over the batch wins for fp32 on CUDA (NVlabs' rule) and
            # for single images; on CPU a batch runs faster as one shared-weight conv (measured at
            # 256 px, batch 4: 1.5 vs 2.1 s/img). Training always uses the shared-weight form.
            single, cuda_fp32 = ws.shape[0] == 1, ws.device.type == "cuda" and dtype == torch.float32
            fused_modconv = not self.training and (single or cuda_fp32)
        layer = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **layer)
        elif self.architecture == "resnet":
            y = self.skip(x.to(dtype), gain=math.sqrt(0.5))
            x = self.conv0(x.to(dtype), next(w_iter), **layer)
            x = y + self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer)
        else:
            x = self.conv0(x.to(dtype), next(w_iter), **layer)
            x = self.conv1(x, next(w_iter), **layer)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] (or [N, w_dim], broadcast) -> images [N, img_channels, R, R] in ~[-1, 1]."""

    def __init__(self, *,
                 w_dim: int,                       # width of w
                 img_resolution: int,              # output resolution (power of two)
                 img_channels: int,                # image channels
                 channel_base: int = 32768,        # channels = min(channel_base // res, channel_max)
                 channel_max: int = 512,           # upper bound on channels
                 num_fp16_res: int = 0,            # fp16 (CUDA) for this many highest resolutions
                 conv_clamp: float | None = None,  # clamp conv outputs to +-X (None: off)
                 architecture: str = "skip"):      # 'orig', 'skip' or 'resnet'
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        fp16_res = _fp16_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                in_channels=_channels(res // 2, channel_base, channel_max) if res > 4 else 0,
                out_channels=_channels(res, channel_base, channel_max), w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=(res == img_resolution), architecture=architecture,
                conv_clamp=conv_clamp, use_fp16=(res >= fp16_res))
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool = False,
                fused_modconv: bool | None = None, return_features: bool = False,
                block_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None):
        """ws: [N, num_ws, w_dim] or [N, w_dim]. noise_mode: 'const' (stored noise, deterministic),
        'random' or 'none'. Returns img [N, img_channels, R, R] float32; with ``return_features``,
        ``(img, {res: block output [N, C_res, res, res]})`` (block dtype: fp16 for fp16 blocks on CUDA).
        ``block_hook(res, x) -> x``, when given, replaces each block's output x [N, C_res, res, res]
        before the next block reads it (and before it is recorded as a feature); the image skip path
        is left alone.
        """
        if ws.ndim == 2:
            ws = ws.unsqueeze(1).expand(-1, self.num_ws, -1)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] or [N, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        features = {}
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # A block's ToRGB shares its w with the next block's first conv.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32, fused_modconv=fused_modconv)
            if block_hook is not None:
                x = block_hook(res, x)
            features[res] = x
        return (img, features) if return_features else img


class Generator(PretrainedModel):
    """StyleGAN2 generator: z [N, z_dim] -> images [N, img_channels, R, R] in ~[-1, 1].

    ``G(z)`` = ``G.synthesis(G.mapping(z, ...))``; :meth:`render` is the one way the rest of the
    project turns W+ codes into images. Load NVlabs weights through the converter; save and load with
    ``save_pretrained`` / ``from_pretrained``.
    """

    config_class = StyleGAN2Config

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=config.w_dim, img_resolution=config.img_resolution, img_channels=config.img_channels,
            channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp, architecture=config.architecture)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=config.z_dim, w_dim=config.w_dim, num_ws=self.num_ws,
                                      num_layers=config.mapping_layers, lr_multiplier=config.mapping_lr_multiplier,
                                      w_avg_beta=config.w_avg_beta)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, noise_mode: str = "const", force_fp32: bool = False,
                update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        """z: [N, z_dim] standard normal. Returns images [N, img_channels, R, R] float32 in ~[-1, 1]
        (not clamped: NVlabs outputs slightly exceed the range)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, **synthesis_kwargs)

    def render(self, ws: torch.Tensor, *, fused_modconv: bool | None = None, return_features: bool = False,
               block_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None):
        """Images of W+ codes, as every consumer of a trained generator needs them (projector, editing,
        encoder and mapper training, super-resolution): deterministic and in float32.

        ws: [N, num_ws, w_dim] (or [N, w_dim], broadcast to every layer), moved to G's device.
        Returns images [N, img_channels, R, R] (RGB: [N, 3, R, R]), float32, in about [-1, 1] and
        not clamped (trained generators slightly exceed the range: clamp before display or
        comparison). Always ``noise_mode='const'`` (G's stored noise maps: the same codes give the
        same image) and ``force_fp32=True`` (no float16 blocks, even on CUDA). Gradients flow to ws
        (and to G's parameters that require them) unless called under ``torch.no_grad()``.

        fused_modconv: the modulated-convolution form. ``None`` (default) lets each block choose as
        :class:`SynthesisBlock` does at inference (grouped conv for single images and for fp32 CUDA
        in eval mode); ``False`` forces the shared-weight form, which the differentiable sites
        (projection, latent optimisation, encoder/mapper/SR training) use: faster forward+backward.
        Both compute the same function (up to float rounding).
        return_features: also return ``{res: block output [N, C_res, res, res] float32}``, for
        res = 4, 8, ..., R: ``(images, features)``.
        block_hook: ``hook(res, x) -> x`` replaces each block's output before the next block reads it
        (super-resolution fuses its encoder's features into the bank this way).
        """
        ws = ws.to(self.mapping.w_avg.device)
        return self.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=fused_modconv,
                              return_features=return_features, block_hook=block_hook)


# ------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromrgb) -> conv0 -> conv1 (down 2) (+ resnet skip).

    x [N, tmp_channels, R, R] (None for the first block), img [N, img_channels, R, R] ->
    (x [N, out_channels, R/2, R/2], img at R/2 for 'skip' else None).
    """

    def __init__(self, *,
                 in_channels: int,               # channels of the previous block, 0 for the first
                 tmp_channels: int,              # channels inside this block
                 out_channels: int,              # channels handed to the next block
                 resolution: int,                # input resolution R
                 img_channels: int,              # image channels
                 architecture: str = "resnet",   # 'orig', 'skip' or 'resnet'
                 conv_clamp: float | None = None,  # clamp conv outputs to +-X (None: off)
                 use_fp16: bool = False):        # run in float16 on CUDA
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(DEFAULT_FILTER))
        conv = dict(activation="lrelu", conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(in_channels=img_channels, out_channels=tmp_channels, kernel_size=1, **conv)
        self.conv0 = Conv2dLayer(in_channels=tmp_channels, out_channels=tmp_channels, kernel_size=3, **conv)
        self.conv1 = Conv2dLayer(in_channels=tmp_channels, out_channels=out_channels, kernel_size=3, down=2, **conv)
        if architecture == "resnet":
            self.skip = Conv2dLayer(in_channels=tmp_channels, out_channels=out_channels, kernel_size=1, bias=False,
                                    down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None,
                force_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        dtype = _block_dtype(self.use_fp16, force_fp32, (x if x is not None else img).device)
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = y if x is None else x + y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: (fromrgb) -> minibatch std -> conv -> fc -> out: [N, C, 4, 4] -> logits [N, 1]."""

    def __init__(self, *,
                 in_channels: int,               # channels at 4x4
                 resolution: int,                # 4
                 img_channels: int,              # image channels
                 architecture: str = "resnet",   # 'orig', 'skip' or 'resnet'
                 mbstd_group_size: int | None = 4,  # minibatch-std group size (None: whole batch)
                 mbstd_num_channels: int = 1,    # minibatch-std channels (0: off)
                 conv_clamp: float | None = None):  # clamp conv outputs to +-X (None: off)
        super().__init__()
        if mbstd_num_channels and in_channels % mbstd_num_channels:
            raise ValueError(f"mbstd_num_channels={mbstd_num_channels} must divide the {in_channels} channels at 4x4")
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(in_channels=img_channels, out_channels=in_channels, kernel_size=1,
                                       activation="lrelu")
        self.mbstd = (MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels=in_channels + mbstd_num_channels, out_channels=in_channels, kernel_size=3,
                                activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_features=in_channels * resolution ** 2, out_features=in_channels,
                                      activation="lrelu")
        self.out = FullyConnectedLayer(in_features=in_channels, out_features=1)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(PretrainedModel):
    """StyleGAN2 discriminator: images [N, img_channels, R, R] in [-1, 1] -> logits [N, 1] (real > fake)."""

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        if config.img_resolution < 8:
            raise ValueError(f"the discriminator needs img_resolution >= 8, got {config.img_resolution}")
        self.config = config
        self.c_dim, self.img_resolution, self.img_channels = config.c_dim, config.img_resolution, config.img_channels
        self.block_resolutions = [2 ** i for i in range(int(math.log2(config.img_resolution)), 2, -1)]
        fp16_res = _fp16_resolution(config.img_resolution, config.num_fp16_res)
        ch = lambda res: _channels(res, config.channel_base, config.channel_max)  # noqa: E731
        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(
                in_channels=ch(res) if res < config.img_resolution else 0, tmp_channels=ch(res),
                out_channels=ch(res // 2), resolution=res, img_channels=config.img_channels,
                architecture=config.architecture, conv_clamp=config.conv_clamp, use_fp16=(res >= fp16_res)))
        self.b4 = DiscriminatorEpilogue(
            in_channels=ch(4), resolution=4, img_channels=config.img_channels, architecture=config.architecture,
            mbstd_group_size=config.mbstd_group_size, mbstd_num_channels=config.mbstd_num_channels,
            conv_clamp=config.conv_clamp)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool = False) -> torch.Tensor:
        """img: [N, img_channels, R, R] in [-1, 1]. Returns logits [N, 1] float32."""
        if c is not None and c.numel() > 0:
            raise ValueError("this discriminator is unconditional (c_dim=0); pass c=None")
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"img must be [N, {', '.join(map(str, expected))}], got {tuple(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        return self.b4(x, img)
