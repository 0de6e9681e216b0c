"""StyleGAN2 (NVlabs StyleGAN2-ADA compatible) generator, discriminator and custom ops."""

from generation.stylegan2.config import DiscriminatorConfig, StyleGAN2Config
from generation.stylegan2.networks import Discriminator, Generator

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "StyleGAN2Config"]
