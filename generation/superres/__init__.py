"""Text-conditioned super-resolution with a StyleGAN2 latent bank.

    from generation.superres import SRPipeline
    pipe = SRPipeline.from_pretrained("checkpoints/sr-demo64-x4")
    out = pipe(image, prompt="a red star with stripes")      # out.images, out.lr_images, out.notes

The model (:class:`SRModel`, configured by :class:`SRConfig`; :func:`config_for_generator` sizes one
for a generator) is in :mod:`.modeling_sr`, the pipeline in :mod:`.pipeline_sr`; training pieces
(:mod:`.data`, :mod:`.losses`, :mod:`.objective`) and evaluation (:mod:`.metrics`, :mod:`.evaluate`)
are imported from their modules.
"""

from generation.superres.modeling_sr import SCALES, SRConfig, SRModel, config_for_generator
from generation.superres.pipeline_sr import SRPipeline, SRPipelineOutput

__all__ = ["SCALES", "SRConfig", "SRModel", "SRPipeline", "SRPipelineOutput", "config_for_generator"]
