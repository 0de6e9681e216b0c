"""Text-guided editing of frames and clips with a StyleGAN2 generator steered by HD-VILA.

    from generation.editing import EditPipeline
    pipe = EditPipeline.from_pretrained("checkpoints/edit-demo64")
    out = pipe(image, "make it striped")          # out.images, out.latents, out.inversion_psnr, out.notes
    clip = pipe.edit_clip(frames, "make it red")  # frames [T, 3, H, W] in [-1, 1]: one edit for the clip

The pipeline (:class:`EditPipeline`, returning :class:`EditPipelineOutput`, and :class:`EditClipOutput`
for a clip) is in :mod:`.pipeline_edit`; its parts: the latent encoder (:class:`LatentEncoder`,
configured by :class:`EncoderConfig`) in :mod:`.encoder`, the open-vocabulary mapper
(:class:`EditMapper`, :class:`MapperConfig`) in :mod:`.mapper`, the HD-VILA guide
(:class:`HDVILAGuide`) in :mod:`.guide`, latent optimisation (:func:`optimize_edit`) in
:mod:`.optimize`, and the editing vocabulary (:class:`AttributeVocabulary` of :class:`Attribute` s)
in :mod:`.attributes`. Sizing a fresh encoder or mapper for a generator
(:func:`.encoder.config_for_generator`, :func:`.mapper.config_for`), clip helpers (:mod:`.clips`),
the in-domain check (:mod:`.domain`) and the value objective (:mod:`.value_objective`) are imported
from their modules.
"""

from generation.editing.attributes import Attribute, AttributeVocabulary
from generation.editing.encoder import EncoderConfig, LatentEncoder
from generation.editing.guide import HDVILAGuide
from generation.editing.mapper import EditMapper, MapperConfig
from generation.editing.optimize import OptimizationResult, optimize_edit
from generation.editing.pipeline_edit import EditClipOutput, EditPipeline, EditPipelineOutput

__all__ = ["Attribute", "AttributeVocabulary", "EditClipOutput", "EditMapper", "EditPipeline", "EditPipelineOutput",
           "EncoderConfig", "HDVILAGuide", "LatentEncoder", "MapperConfig", "OptimizationResult", "optimize_edit"]
