"""Configs of the StyleGAN2 generator and discriminator (saved as ``config.json`` by
:class:`~hdvila.modeling_utils.PretrainedModel`). Field names follow the constructor arguments of
NVlabs StyleGAN2-ADA so a network pickle's ``init_kwargs`` map onto them one to one."""

from __future__ import annotations

from dataclasses import dataclass

GENERATOR_ARCHITECTURES = ("orig", "skip", "resnet")
DISCRIMINATOR_ARCHITECTURES = ("orig", "skip", "resnet")


def _check_common(name: str, c_dim: int, img_resolution: int, img_channels: int, architecture: str,
                  architectures: tuple[str, ...], channel_base: int, channel_max: int, num_fp16_res: int,
                  conv_clamp: float | None) -> None:
    if c_dim != 0:
        raise ValueError(f"{name}: c_dim={c_dim}, but class-conditional StyleGAN2 networks are not supported; "
                         f"use an unconditional network (c_dim=0).")
    if img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"{name}: img_resolution must be a power of two >= 4, got {img_resolution}")
    if img_channels < 1:
        raise ValueError(f"{name}: img_channels must be >= 1, got {img_channels}")
    if architecture not in architectures:
        raise ValueError(f"{name}: architecture must be one of {architectures}, got {architecture!r}")
    if channel_base < 1 or channel_max < 1:
        raise ValueError(f"{name}: channel_base and channel_max must be >= 1")
    if min(channel_base // img_resolution, channel_max) < 1:
        raise ValueError(f"{name}: channel_base={channel_base} leaves no channels at {img_resolution}px "
                         f"(channels = min(channel_base // res, channel_max))")
    if num_fp16_res < 0:
        raise ValueError(f"{name}: num_fp16_res must be >= 0, got {num_fp16_res}")
    if conv_clamp is not None and conv_clamp <= 0:
        raise ValueError(f"{name}: conv_clamp must be positive or None, got {conv_clamp}")


@dataclass
class StyleGAN2Config:
    model_type: str = "stylegan2_generator"
    z_dim: int = 512
    c_dim: int = 0            # conditioning not supported: > 0 raises a clear error
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "skip"

    def __post_init__(self) -> None:
        _check_common("StyleGAN2Config", self.c_dim, self.img_resolution, self.img_channels, self.architecture,
                      GENERATOR_ARCHITECTURES, self.channel_base, self.channel_max, self.num_fp16_res, self.conv_clamp)
        if self.z_dim < 1 or self.w_dim < 1 or self.mapping_layers < 1:
            raise ValueError("StyleGAN2Config: z_dim, w_dim and mapping_layers must be >= 1")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes: 2*log2(res) - 2 (18 at 1024px)."""
        return 2 * (self.img_resolution.bit_length() - 1) - 2


@dataclass
class DiscriminatorConfig:
    model_type: str = "stylegan2_discriminator"
    c_dim: int = 0
    img_resolution: int = 1024
    img_channels: int = 3
    architecture: str = "resnet"
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        _check_common("DiscriminatorConfig", self.c_dim, self.img_resolution, self.img_channels, self.architecture,
                      DISCRIMINATOR_ARCHITECTURES, self.channel_base, self.channel_max, self.num_fp16_res,
                      self.conv_clamp)
        if self.mbstd_num_channels < 0 or (self.mbstd_group_size is not None and self.mbstd_group_size < 1):
            raise ValueError("DiscriminatorConfig: mbstd_group_size must be >= 1 and mbstd_num_channels >= 0")
