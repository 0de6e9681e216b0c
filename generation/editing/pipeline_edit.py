"""``EditPipeline``: text-guided editing of frames with a StyleGAN2 generator steered by HD-VILA.

Components: ``hdvila`` and ``processor`` (the guide), ``generator`` (StyleGAN2), ``encoder``
(:class:`~generation.editing.encoder.LatentEncoder`, for real images) and ``mapper``
(:class:`~generation.editing.mapper.EditMapper`, for the one-pass method). ``__call__`` reads like
the algorithm::

    x = self.prepare_images(image)                     # input policy below, [N, 3, R, R] in [-1, 1]
    ws = self.invert(x, refine_steps)                  # encoder (+ projector refinement), PSNR per image
    text = self.encode_prompt(prompt, len(ws))         # [N, D] HD-VILA text embeddings
    ws_edit = self.edit_latents(ws, text, method, strength, steps)
    images = self.synthesize(ws_edit)                  # the generator, [N, 3, R, R]

A video clip: :meth:`EditPipeline.edit_clip` gives every frame *one* edit (the latents smoothed over
time, one offset for the clip, :mod:`generation.editing.clips`), so that the edit does not flicker;
it returns an :class:`EditClipOutput`.

Methods: ``'mapper'`` (one forward pass of the mapper for any prompt) or ``'optimize'`` (StyleCLIP's
latent optimisation with HD-VILA, ``steps`` Adam steps: slower, no trained mapper needed). ``strength``
scales the edit offset (0: the reconstruction; 1: the trained edit; at most 2).

Input policy (also in ``hdvila edit --help`` and the README): an image whose size is not the
generator's ``R x R`` is centre-cropped to a square and resized to ``R`` (antialiased bicubic), with a
note; the aspect is never distorted. Every edit of a real image reports its inversion PSNR (the
reconstruction against that cropped, resized input, RGB 8-bit).

Faces (``faces="largest"`` or ``"all"``, for an FFHQ-like generator and real photos): each image is
searched for faces (:mod:`generation.faces`), each selected face is aligned as FFHQ at ``R x R``,
edited as above, and pasted back into the whole frame, which keeps its size; outside the paste mask
its pixels are the input's, bit for bit. An image with no face raises
:class:`~generation.faces.NoFaceError`. The output's ``faces`` holds, per image, each face's record
(box, landmarks, quad, matrix, inversion PSNR, the aligned crop and its edit:
:class:`~generation.faces.pipeline.FaceRecord`).

Notes are data, not warnings: what the input policy did to each image comes back in the output's
``notes`` (one per image), what is doubtful about the prompt (no word the mapper was trained on) in
its ``prompt_notes``. Nothing goes through Python's ``warnings``, whose state is process-wide: two
edits running at once in one process (the web UI serves two requests at a time) each get exactly
their own notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Sequence

import torch

from generation.editing.clips import check_temporal_sigma, smooth_over_time
from generation.pipeline_utils import Pipeline, PipelineOutput, fit_to_square, image_to_tensor
from hdvila.errors import CheckpointError, InputFileError, UserError

METHODS = ("mapper", "optimize")
STRENGTH_RANGE = (0.0, 2.0)
MIN_SIDE = 8
#: The projector refinement's texture-loss weight and object-pixel weight (:meth:`EditPipeline.invert`):
#: texture as in encoder training; object weighting off (it did not help on the demo domain, docs/results.md).
REFINE_TEXTURE_WEIGHT = 10.0
REFINE_FOREGROUND_WEIGHT = 0.0
INPUT_POLICY = ("images that are not {r}x{r} px are centre-cropped to a square and resized to {r}x{r} "
                "(antialiased bicubic); the aspect is never distorted")


@dataclass
class EditPipelineOutput(PipelineOutput):
    """``images``: the edits; ``latents``: their W+ latents [N, num_ws, w_dim] (CPU float32);
    ``inversion_psnr``: dB of each reconstruction against its (policy-resized) input, None for latent
    inputs; ``inputs``: the images after the input policy [N, 3, R, R] in [-1, 1] (None for latent
    inputs); ``reconstructions`` [N, 3, R, R] in [-1, 1]; ``notes``: what the input policy did to
    each image ("" where nothing; one per image, none for latent inputs); ``prompt_notes``: what is
    doubtful about the prompt(s), e.g. that none of its words were seen in training (empty if
    nothing).

    With ``faces``: ``images`` are the whole frames with the edited faces pasted back (a batch
    when they share a size, else a list, one per image; 'pil': a list either way);
    ``inversion_psnr`` the mean over each image's faces; ``faces`` one list per image of
    :class:`~generation.faces.pipeline.FaceRecord` (largest face first); ``latents``, ``inputs``
    (the aligned crops), ``reconstructions`` and ``source_latents`` one row per face, image by image.

    ``return_dict=False`` gives :meth:`to_tuple`: ``(images, latents, inputs, inversion_psnr,
    reconstructions, source_latents, notes, prompt_notes, faces)``."""

    latents: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    inversion_psnr: list[float] | None = None
    reconstructions: torch.Tensor | None = None
    source_latents: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    prompt_notes: list[str] = field(default_factory=list)
    faces: list[list[Any]] | None = None


@dataclass
class EditClipOutput:
    """What :meth:`EditPipeline.edit_clip` returns. ``frames``: the edited clip [T, 3, R, R] in [-1, 1]
    (CPU float32); ``reconstructions``: the inversion of every frame, after the smoothing over time,
    [T, 3, R, R] in [-1, 1]; ``latents``: the edited W+ latents [T, num_ws, w_dim] (CPU float32; one
    offset for the whole clip); ``inversion_psnr``: dB, the mean over frames of each reconstruction
    against its (policy-resized) frame; ``notes``: what the input policy did (each distinct note once,
    without its frame label) and whether the clip is outside what the generator draws (by its mean
    inversion PSNR); ``prompt_notes``: what is doubtful about the prompt (:meth:`EditPipeline.prompt_notes`).
    Both lists are empty when there is nothing to say."""

    frames: torch.Tensor
    reconstructions: torch.Tensor
    latents: torch.Tensor
    inversion_psnr: float
    notes: list[str] = field(default_factory=list)
    prompt_notes: list[str] = field(default_factory=list)


def _check_optimize_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse, with a TypeError as Python does, an extra keyword of ``__call__`` that
    :func:`~generation.editing.optimize.optimize_edit` does not take (a typo, or ``generator=``: the
    pipeline is deterministic), also with ``method='mapper'``, which would otherwise ignore it."""
    import inspect

    from generation.editing.optimize import optimize_edit

    known = {n for n, p in inspect.signature(optimize_edit).parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(kwargs) - (known - {"steps"}))
    if unknown:
        raise TypeError(f"EditPipeline.__call__() got unexpected keyword argument(s) {unknown}; its extra keyword "
                        f"arguments go to optimize_edit, which takes {sorted(known - {'steps'})}.")


def refine_texture_weight(refine_texture: float | None) -> float:
    """A ``refine_texture`` option (of ``__call__``, ``edit_clip``, ``hdvila edit``, ``eval-edit``) as
    :meth:`EditPipeline.invert`'s ``texture_weight``: None is its default, :data:`REFINE_TEXTURE_WEIGHT`."""
    return REFINE_TEXTURE_WEIGHT if refine_texture is None else float(refine_texture)


class EditPipeline(Pipeline):
    """Text-guided editing (see the module docstring). Use :meth:`from_pretrained` on a pipeline
    folder (the bundled ``checkpoints/edit-demo64``) or pass the components; ``encoder`` is needed
    for images (not for latents), ``mapper`` for ``method='mapper'``."""

    def __init__(self, hdvila, processor, generator, encoder=None, mapper=None):
        super().__init__()
        self.register_modules(hdvila=hdvila, processor=processor, generator=generator, encoder=encoder, mapper=mapper)
        self._guide = None

    @classmethod
    def untrained(cls, generator, hdvila, *, vocabulary=None, encoder_kwargs: dict | None = None,
                  mapper_kwargs: dict | None = None) -> "EditPipeline":
        """A pipeline on ``generator`` and ``hdvila`` with a freshly initialised encoder and mapper
        configured for them (the starting point of training, and for speed measurements; the mapper's
        zero-initialised output makes every edit the reconstruction until it is trained). ``vocabulary``:
        the mapper's :class:`~generation.editing.attributes.AttributeVocabulary` (None: no prompt check),
        see :func:`~generation.editing.mapper.config_for`."""
        from generation.editing.encoder import LatentEncoder, config_for_generator
        from generation.editing.mapper import EditMapper, config_for
        from hdvila.processing_hdvila import HDVILAProcessor

        encoder = LatentEncoder(config_for_generator(generator, **(encoder_kwargs or {})))
        mapper = EditMapper(config_for(generator, hdvila, vocabulary, **(mapper_kwargs or {})))
        pipe = cls(hdvila=hdvila.eval(), processor=HDVILAProcessor.from_config(hdvila.config), generator=generator,
                   encoder=encoder, mapper=mapper)
        mapper.route_by(pipe.guide, vocabulary)  # a vocabulary that gates layers: route by its training prompts
        return pipe

    # ---- components ---------------------------------------------------------------------------
    def check_components(self) -> None:
        """Refuse an encoder or mapper trained for another generator, or a mapper for another guide."""
        from generation.editing.guide import guide_fingerprint

        if self.encoder is not None:
            self.encoder.check_generator(self.generator)
        if self.mapper is not None:
            self.mapper.check_generator(self.generator)
            self.mapper.check_guide(guide_fingerprint(self.hdvila), int(self.hdvila.config.projection_dim))

    @property
    def guide(self):
        from generation.editing.guide import HDVILAGuide

        if self._guide is None or self._guide.hdvila is not self.hdvila:
            self._guide = HDVILAGuide(self.hdvila, self.processor)
        return self._guide

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)

    def fit(self, t: torch.Tensor, label: str) -> tuple[torch.Tensor, str]:
        """[3, H, W] in [-1, 1] -> ([3, R, R], note) by the input policy (:data:`INPUT_POLICY`)."""
        r = self.resolution
        return fit_to_square(t, r, label, f"the generator's {r}x{r}", min_side=MIN_SIDE, task="edit")

    def domain_notes(self, psnrs: Sequence[float], labels: Sequence[str]) -> list[str]:
        """Per image, a note when its inversion PSNR is below the encoder's calibrated in-domain
        threshold (:mod:`generation.editing.domain`): the image is outside what the generator draws.
        '' otherwise, and always for an encoder without a calibration."""
        from generation.editing.domain import out_of_domain_note

        threshold = None if self.encoder is None else self.encoder.config.in_domain_psnr_db
        return [out_of_domain_note(p, threshold, label) for p, label in zip(psnrs, labels)]

    @property
    def vocabulary(self) -> list[str] | None:
        return (list(self.mapper.config.vocabulary)
                if self.mapper is not None and self.mapper.config.vocabulary else None)

    # ---- steps --------------------------------------------------------------------------------
    def check_inputs(self, n: int, prompt, method: str, strength: float, steps: int, refine_steps: int, *,
                     latents_given: bool, refine_texture: float | None = None) -> None:
        """Refuse bad arguments of ``__call__`` (or :meth:`edit_clip`) for ``n`` images before any work:
        a UserError (a CheckpointError where the pipeline lacks the mapper or encoder they need).
        ``latents_given``: latents instead of images (no encoder needed); ``refine_texture``: the
        refinement's texture-loss weight (None: :meth:`invert`'s default)."""
        if method not in METHODS:
            raise UserError(f"method must be 'mapper' or 'optimize', got {method!r}.")
        if method == "mapper" and self.mapper is None:
            raise CheckpointError("this pipeline has no mapper; use method='optimize', or load a pipeline folder "
                                  "with a mapper (generation/train_mapper.py trains one).")
        lo, hi = STRENGTH_RANGE
        if not isinstance(strength, (int, float)) or not lo <= float(strength) <= hi:
            raise UserError(f"strength must be a number from {lo:g} (no edit) to {hi:g} (twice the edit), "
                            f"got {strength!r}.")
        if not isinstance(steps, int) or steps < 1 or steps > 5000:
            raise UserError(f"steps must be an integer from 1 to 5000, got {steps!r}.")
        if not isinstance(refine_steps, int) or refine_steps < 0 or refine_steps > 5000:
            raise UserError(f"refine_steps must be an integer from 0 to 5000, got {refine_steps!r}.")
        if refine_texture is not None and (isinstance(refine_texture, bool) or not isinstance(refine_texture, Real)
                                           or not math.isfinite(refine_texture) or refine_texture < 0):
            raise UserError(f"refine_texture must be a number >= 0 (0: pixel losses only), got {refine_texture!r}.")
        if not latents_given and self.encoder is None and refine_steps == 0:
            raise CheckpointError("this pipeline has no encoder to invert images; pass latents, or refine_steps > 0 "
                                  "to invert with the projector alone.")
        if n == 0:
            raise InputFileError("no image given.")
        if isinstance(prompt, (list, tuple)) and len(prompt) != n:
            raise UserError(f"{len(prompt)} prompts for {n} images: give one prompt, or one per image.")

    def prepare_images(self, images: Sequence[Any],
                       labels: Sequence[str] | None = None) -> tuple[torch.Tensor, list[str]]:
        """Images -> [N, 3, R, R] in [-1, 1] by the input policy, and a note per image ("" where the
        policy changed nothing), returned, not warned."""
        out, notes = [], []
        for i, image in enumerate(images):
            label = labels[i] if labels else f"image {i + 1}"
            t, note = self.fit(image_to_tensor(image, label), label)
            out.append(t)
            notes.append(note)
        return torch.stack(out), notes

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, 3, R, R] on the pipeline's device (clamped to [-1, 1]) with
        the stored noise, ``batch_size`` latents at a time; for rendering only, without gradients (an
        autograd graph kept with each image would hold every activation of the generator: gigabytes over
        an evaluation)."""
        return torch.cat([self.generator.render(ws[i:i + batch_size].to(self.device)).clamp(-1, 1)
                          for i in range(0, len(ws), batch_size)])

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """[N, 3, R, R] -> W+ [N, num_ws, w_dim] with the encoder."""
        return torch.cat([self.encoder(x[i:i + batch_size].to(self.device), self.generator).float()
                          for i in range(0, len(x), batch_size)])

    def invert(self, x: torch.Tensor, refine_steps: int = 0, refine_lr: float = 0.01, *,
               texture_weight: float = REFINE_TEXTURE_WEIGHT, foreground_weight: float = REFINE_FOREGROUND_WEIGHT
               ) -> tuple[torch.Tensor, list[float], torch.Tensor]:
        """x [N, 3, R, R] in [-1, 1] -> (W+ latents [N, num_ws, w_dim], inversion PSNR per image, the
        reconstructions [N, 3, R, R] on the CPU). The encoder's latents, refined by ``refine_steps``
        projector steps (with the generator's stored noise kept, from the encoder's latents when there
        is an encoder, else from w_avg). The refinement's loss is pixel MSE, the multi-scale L1, the
        phase-free texture loss (``texture_weight``) and the object's pixels counted 1 +
        ``foreground_weight`` times (:func:`~generation.stylegan2.projector.project_batch`): a pixel
        loss alone gives stripes and dots back as the plain average."""
        from generation.stylegan2.projector import project_batch, psnr

        ws = self.encode(x) if self.encoder is not None else None
        if refine_steps:
            results = project_batch(self.generator, x, steps=refine_steps, init_ws=ws, stored_noise=True,
                                    lr=refine_lr if ws is not None else 0.1,
                                    initial_noise_factor=0.0 if ws is not None else 0.05, perceptual="multiscale",
                                    texture_weight=texture_weight, foreground_weight=foreground_weight,
                                    device=self.device)
            ws = torch.cat([r.ws for r in results]).to(self.device)
        rec = self.synthesize(ws).cpu()
        return ws, [psnr(rec[i:i + 1], x[i:i + 1].cpu()) for i in range(len(ws))], rec

    def encode_prompt(self, prompt: str | Sequence[str], n: int) -> torch.Tensor:
        """[n, D] text embeddings (prompts checked: empty or overlong refused; :meth:`prompt_notes`
        says whether their words are known)."""
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        distinct = sorted(set(prompts), key=prompts.index)
        emb = self.guide.text_features(distinct)
        return emb[[distinct.index(p) for p in prompts]]

    def prompt_notes(self, prompt: str | Sequence[str]) -> list[str]:
        """Notes on ``prompt`` (one, or one per image; checked by :meth:`encode_prompt` first): for
        each distinct prompt none of whose words the mapper was trained on, that the edit may do
        nothing. Empty when there is nothing to say (or the pipeline has no mapper vocabulary)."""
        from generation.editing.guide import prompt_label, unknown_words_note

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        distinct = sorted(set(prompts), key=prompts.index)
        notes = [unknown_words_note(p, self.vocabulary, prompt_label(i, len(distinct))) for i, p in enumerate(distinct)]
        return [n for n in notes if n]

    def edit_latents(self, ws: torch.Tensor, text: torch.Tensor, method: str = "mapper", strength: float = 1.0,
                     steps: int = 300, source_embeds: torch.Tensor | None = None, **optimize_kwargs) -> torch.Tensor:
        """Edited latents: ws + strength * (the method's offset). ``source_embeds`` [N, D] (default: the
        guide's embedding of each reconstruction) is what the mapper reads as the source."""
        ws = ws.to(self.device, torch.float32)
        if method == "mapper":
            with torch.no_grad():
                if source_embeds is None:
                    source_embeds = self.guide.image_features(self.synthesize(ws))
                return self.mapper.edit(ws, text.to(self.device), source_embeds.to(self.device),
                                        self.generator.mapping.w_avg, strength)
        from generation.editing.optimize import optimize_edit

        result = optimize_edit(self.generator, self.guide, ws, text, steps=steps, **optimize_kwargs)
        return ws + strength * (result.ws.to(self.device) - ws)

    def __call__(self, image: Any | Sequence[Any] = None, prompt: str | Sequence[str] = "", *,
                 latents: torch.Tensor | None = None, method: str = "mapper", strength: float = 1.0, steps: int = 300,
                 refine_steps: int = 0, refine_texture: float | None = None, output_type: str = "pil",
                 return_dict: bool = True, labels: Sequence[str] | None = None, faces: str | None = None,
                 **optimize_kwargs):
        """Edit one image, a list of images, or latents by ``prompt`` (one for all, or one per image).

        ``latents``: W+ [N, num_ws, w_dim] or W [N, w_dim] instead of images (no inversion).
        ``faces``: None (the input policy: each image is the generator's frame), ``"largest"`` or
        ``"all"``: the faces of each image are aligned, edited and pasted back (the module docstring).
        ``refine_steps``: projector steps after the encoder (slower, more faithful); ``refine_texture``:
        their texture-loss weight (None: :meth:`invert`'s default, ``REFINE_TEXTURE_WEIGHT``; 0: pixel
        losses only; unused without ``refine_steps``). Every step is deterministic (the generator
        renders with its stored noise). Extra keyword arguments go to
        :func:`~generation.editing.optimize.optimize_edit` (``l2_weight``, ``lr``, ...).
        Returns :class:`EditPipelineOutput` (``images`` as ``output_type``, by
        :meth:`~generation.pipeline_utils.Pipeline.postprocess`: 'pil' a list of RGB images, 'np' a
        float32 array [N, R, R, 3] in [0, 1], 'pt' a float32 tensor [N, 3, R, R] in [-1, 1]; with the
        per-image ``notes`` and the ``prompt_notes``); ``return_dict=False``: its
        :meth:`~generation.pipeline_utils.PipelineOutput.to_tuple` (``[0]`` the images).
        """
        _check_optimize_kwargs(optimize_kwargs)
        if faces is not None:
            return self._edit_faces(image, prompt, latents=latents, method=method, strength=strength, steps=steps,
                                    refine_steps=refine_steps, refine_texture=refine_texture,
                                    output_type=output_type, return_dict=return_dict, labels=labels, faces=faces,
                                    **optimize_kwargs)
        notes: list[str] = []
        psnrs = rec = x = None
        if latents is not None:
            ws = latents if latents.ndim == 3 else latents[:, None].expand(-1, self.generator.num_ws, -1)
            n = ws.shape[0]
        else:
            if image is None:
                raise InputFileError("give an image (or a list of images), or latents.")
            batched = isinstance(image, (list, tuple)) or (isinstance(image, torch.Tensor) and image.ndim == 4)
            images = list(image) if batched else [image]
            n = len(images)
        self.check_inputs(n, prompt, method, strength, steps, refine_steps, latents_given=latents is not None,
                          refine_texture=refine_texture)
        text = self.encode_prompt(prompt, n)  # before any slow work: a bad prompt costs nothing
        prompt_notes = self.prompt_notes(prompt)
        if latents is not None:
            want = (self.generator.num_ws, self.generator.w_dim)
            if tuple(ws.shape[1:]) != want:
                raise UserError(f"latents must be [N, {want[0]}, {want[1]}] (W+) or [N, {want[1]}] (W) for this "
                                f"generator, got {tuple(latents.shape)}.")
            ws = ws.to(self.device, torch.float32)
        else:
            x, notes = self.prepare_images(images, labels)
            ws, psnrs, rec = self.invert(x, refine_steps, texture_weight=refine_texture_weight(refine_texture))
            names = labels or [f"image {i + 1}" for i in range(n)]
            # one note per image, naming it once: "a.png: <policy>; <domain>"
            notes = [policy.rstrip(".") + "; " + domain.split(": ", 1)[1] if policy and domain else policy or domain
                     for policy, domain in zip(notes, self.domain_notes(psnrs, names))]
        if rec is None:
            rec = self.synthesize(ws).cpu()
        with torch.no_grad():
            source = self.guide.image_features(rec.to(self.device)) if method == "mapper" else None
        edited = self.edit_latents(ws, text, method, float(strength), steps, source_embeds=source, **optimize_kwargs)
        out = self.synthesize(edited)
        output = EditPipelineOutput(images=self.postprocess(out, output_type), latents=edited.detach().float().cpu(),
                                    inversion_psnr=psnrs, reconstructions=rec, source_latents=ws.detach().float().cpu(),
                                    notes=notes, prompt_notes=prompt_notes, inputs=None if x is None else x.cpu())
        return output if return_dict else output.to_tuple()

    def _edit_faces(self, image, prompt, *, latents, method, strength, steps, refine_steps, output_type,
                    return_dict, labels, faces, refine_texture: float | None = None, **optimize_kwargs):
        """``__call__`` with ``faces``: align every selected face, edit the crops in one call (the
        plain path), paste each edit back into its frame. ``refine_steps`` and ``refine_texture``
        (None: :meth:`invert`'s texture-loss weight) as in ``__call__``: the inversion of every crop."""
        from generation.faces.pipeline import align_faces, check_face_mode, combine_notes, frames_output

        check_face_mode(faces)
        if latents is not None:
            raise UserError("faces= aligns the faces of images; it cannot be used with latents.")
        if image is None:
            raise InputFileError("give an image (or a list of images) to find faces in.")
        batched = isinstance(image, (list, tuple)) or (isinstance(image, torch.Tensor) and image.ndim == 4)
        images = list(image) if batched else [image]
        # Options and prompt before the detector runs: a bad prompt costs nothing.
        self.check_inputs(len(images), prompt, method, strength, steps, refine_steps, latents_given=False,
                          refine_texture=refine_texture)
        self.encode_prompt(prompt, len(images))
        batch = align_faces(images, faces, self.resolution, labels)
        out = self(list(batch.crops), batch.per_crop(prompt), method=method, strength=strength, steps=steps,
                   refine_steps=refine_steps, refine_texture=refine_texture, output_type="pt",
                   labels=batch.crop_labels, **optimize_kwargs)
        records = batch.records(out.images, psnrs=out.inversion_psnr)
        frames = batch.paste(records)
        psnrs = [sum(r.inversion_psnr for r in recs) / len(recs) for recs in records]
        output = EditPipelineOutput(images=frames_output(frames, output_type, self.postprocess), latents=out.latents,
                                    inversion_psnr=psnrs, inputs=out.inputs, reconstructions=out.reconstructions,
                                    source_latents=out.source_latents, notes=combine_notes(batch, out.notes),
                                    prompt_notes=out.prompt_notes, faces=records)
        return output if return_dict else output.to_tuple()

    def edit_clip(self, frames: torch.Tensor | Sequence[Any], prompt: str, *, method: str = "mapper",
                  strength: float = 1.0, steps: int = 300, refine_steps: int = 0,
                  refine_texture: float | None = None, temporal_sigma: float = 1.0) -> EditClipOutput:
        """Edit a video clip with one edit for the whole clip, so that it does not flicker.

        ``frames``: [T, 3, H, W] in [-1, 1] (or a list of T frames, as ``__call__`` takes images; any
        size: the input policy applies to each). Every frame is inverted (encoder, and ``refine_steps``
        projector steps with ``refine_texture`` their texture-loss weight: None for :meth:`invert`'s
        default, 0 for pixel losses only), the latents are smoothed over time with a Gaussian of ``temporal_sigma``
        frames (inversion jitter is what flickers; 0: not smoothed), and *one* edit offset is computed
        for the clip by ``method``: the mapper at the clip's mean latent with the clip's HD-VILA
        embedding (the full hybrid encoder: :meth:`~generation.editing.guide.HDVILAGuide.clip_features`)
        as the source, or one optimisation of the mean latent; ``strength`` times it is added to every
        frame's latent. ``prompt``: one prompt for the clip. Returns :class:`EditClipOutput` (notes
        returned, never warned). The baseline, each frame edited on its own, is
        :func:`~generation.editing.clips.edit_frames_independently`."""
        if not isinstance(prompt, str):
            raise UserError(f"a clip gets one edit: give one prompt (a str), got {type(prompt).__name__}.")
        self.check_inputs(len(frames), prompt, method, strength, steps, refine_steps, latents_given=False,
                          refine_texture=refine_texture)
        check_temporal_sigma(temporal_sigma)
        text = self.encode_prompt(prompt, 1)  # before any slow work: a bad prompt costs nothing
        prompt_notes = self.prompt_notes(prompt)
        x, notes = self.prepare_images(list(frames), [f"frame {i}" for i in range(len(frames))])
        ws, psnrs, _ = self.invert(x, refine_steps, texture_weight=refine_texture_weight(refine_texture))
        ws = smooth_over_time(ws, temporal_sigma)
        mean = ws.mean(dim=0, keepdim=True)
        rec = self.synthesize(ws)  # the smoothed reconstruction: the mapper's source and a returned field
        with torch.no_grad():
            source = self.guide.clip_features(rec)
        edited_mean = self.edit_latents(mean, text, method, strength, steps, source_embeds=source)
        edited = ws + (edited_mean - mean)
        notes = sorted(set(n.split(": ", 1)[-1] for n in notes if n))
        psnr = sum(psnrs) / len(psnrs)
        notes += [n for n in self.domain_notes([psnr], ["the clip"]) if n]  # on the mean over frames
        return EditClipOutput(frames=self.synthesize(edited).cpu(), reconstructions=rec.cpu(),
                              latents=edited.cpu(), inversion_psnr=psnr, notes=notes, prompt_notes=prompt_notes)
