"""HD-VILA: high-resolution video-language representation and its text-to-visual generation tasks.

Layout: ``hdvila`` (the video-language model and shared plumbing), ``generation`` (StyleGAN2,
super-resolution, the pipeline base), ``apps`` (the command line). Data flows one way:
frames/text -> embeddings -> latents -> images.

The main classes are importable from here; they load lazily so that ``import hdvila`` (and the
``hdvila`` command's help) does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "HDVILAConfig": "hdvila.configuration_hdvila",
    "HDVILAModel": "hdvila.modeling_hdvila",
    "HDVILAOutput": "hdvila.modeling_hdvila",
    "HDVILAMLMOutput": "hdvila.modeling_hdvila",
    "HDVILAProcessor": "hdvila.processing_hdvila",
    "contrastive_loss": "hdvila.losses",
    "mask_tokens": "hdvila.losses",
    "convert_hdvila_checkpoint": "hdvila.convert",
    "load_image": "hdvila.imageio",
    "save_image": "hdvila.imageio",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hdvila' has no attribute {name!r}")
