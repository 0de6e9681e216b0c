"""StyleGAN2 custom ops: each has a plain-PyTorch reference path and a compiled path (C++ on CPU,
CUDA on GPU) built on first use; see :mod:`generation.stylegan2.ops._build` for how one is chosen."""

from generation.stylegan2.ops._build import ExtensionBuildError, build_extension, extensions_dir, get_extension
from generation.stylegan2.ops.bias_act import ACTIVATIONS, bias_act
from generation.stylegan2.ops.conv2d_resample import conv2d_resample
from generation.stylegan2.ops.modulated_conv2d import modulated_conv2d
from generation.stylegan2.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS", "ExtensionBuildError", "bias_act", "build_extension", "conv2d_resample", "downsample2d",
    "extensions_dir", "filter2d", "get_extension", "modulated_conv2d", "setup_filter", "upfirdn2d", "upsample2d",
]
