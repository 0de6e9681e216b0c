"""``SRPipeline``: text-conditioned super-resolution of frames, in one forward pass.

Components: ``sr_model`` (:class:`~generation.superres.modeling_sr.SRModel`), ``generator`` (the
StyleGAN2 latent bank it was trained with), ``hdvila`` and ``processor`` (the caption's text
embedding; optional for a model without text). ``__call__`` reads like the algorithm::

    lr = self.prepare_images(image)              # policy below
    text = self.encode_prompt(prompt, len(lr))   # [N, D] HD-VILA text embeddings, or None
    sr = self.sr_model(lr, self.generator, text) # [N, 3, R, R] in [-1, 1]

Input policy (also in ``hdvila upscale --help`` and the README): an image whose side is not the
model's LR size is centre-cropped to a square and resized to it (antialiased bicubic), with a
note saying so (in the output's ``notes``, one per image: returned, not warned, so concurrent calls
in one process each get their own); a caption longer than the text encoder reads is cut to its
first ``processor.max_length`` tokens, with a note too (not a warning); an image larger than the
model's *output* is refused (downscaling it to upscale again would lose detail the user already
has), as are images under 4 px. The aspect is never distorted.

Faces (``faces="largest"`` or ``"all"``, for a model trained on faces and real photos): each image is
searched for faces (:mod:`generation.faces`), each selected face is aligned as FFHQ at the model's LR
size and super-resolved, and the whole frame is enlarged bicubically by the same factor with the
super-resolved faces pasted into it (as face-restoration tools do); the frame is not held to the
model's sizes (its enlargement to 40 MP at most). An image with no face raises
:class:`~generation.faces.NoFaceError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from generation.pipeline_utils import Pipeline, PipelineOutput, fit_to_square, image_to_tensor
from hdvila.errors import CheckpointError, InputFileError, UserError

MIN_SIDE = 4


def _label(labels: Sequence[str] | None, i: int) -> str:
    """How notes and errors name image ``i``: its label, or "image i+1"."""
    return labels[i] if labels else f"image {i + 1}"


@dataclass
class SRPipelineOutput(PipelineOutput):
    """``images``: the SR outputs; ``lr_images``: the network's LR inputs after the input policy
    [N, 3, r, r] in [-1, 1]; ``notes``: what the input policy did to each image and its caption (cut
to the tokens the text encoder reads), one line each; empty if nothing.

    With ``faces``: ``images`` are the whole frames enlarged (a batch when they share a size, else a
    list; 'pil': a list either way), ``lr_images`` the aligned crops (one row per face, image by
    image) and ``faces`` one list per image of :class:`~generation.faces.pipeline.FaceRecord` (the
    aligned crop, its super-resolved output and where it was pasted).

    ``return_dict=False`` gives :meth:`to_tuple`: ``(images, lr_images, notes, faces)``."""

    lr_images: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    faces: list[list[Any]] | None = None


class SRPipeline(Pipeline):
    """Text-conditioned SR (see the module docstring). Use :meth:`from_pretrained` on a pipeline
    folder (the bundled ``checkpoints/sr-demo64-x4``) or pass the components."""

    def __init__(self, sr_model, generator, hdvila=None, processor=None):
        super().__init__()
        self.register_modules(sr_model=sr_model, generator=generator, hdvila=hdvila, processor=processor)

    # ---- components ---------------------------------------------------------------------------
    def check_components(self) -> None:
        """Refuse a generator or text model the SR model was not trained with."""
        self.sr_model.check_generator(self.generator)
        text_dim = self.sr_model.config.text_dim
        if text_dim and self.hdvila is not None:
            found = self.hdvila.config.projection_dim
            if found != text_dim:
                raise CheckpointError(f"the HD-VILA model gives {found}-d text embeddings, but this super-resolution "
                                      f"model was trained on {text_dim}-d ones; use the HD-VILA model it was trained "
                                      f"with.")

    @property
    def lr_resolution(self) -> int:
        return self.sr_model.config.lr_resolution

    @property
    def out_resolution(self) -> int:
        return self.sr_model.config.out_resolution

    # ---- steps --------------------------------------------------------------------------------
    def check_inputs(self, images: list, prompt, scale: int) -> None:
        """Refuse bad arguments of ``__call__`` before any work: a ``scale`` the model was not trained
        for, no image, or a list of prompts that is not one per image (UserError)."""
        if scale != self.sr_model.config.scale:
            raise UserError(f"this model upscales x{self.sr_model.config.scale} ({self.lr_resolution} -> "
                            f"{self.out_resolution} px); it was not trained for x{scale}. Pass scale="
                            f"{self.sr_model.config.scale} or load a model trained for x{scale}.")
        if not images:
            raise InputFileError("no image given.")
        if isinstance(prompt, (list, tuple)) and len(prompt) != len(images):
            raise UserError(f"{len(prompt)} prompts for {len(images)} images: give one prompt, or one per image.")

    def prepare_images(self, images: Sequence[Any], labels: Sequence[str] | None = None
                       ) -> tuple[torch.Tensor, list[str]]:
        """Images -> LR batch [N, 3, r, r] in [-1, 1] by the input policy, and a note per image ("" where
        the policy changed nothing), returned, not warned."""
        r, out_res = self.lr_resolution, self.out_resolution
        batch, notes = [], []
        for i, image in enumerate(images):
            label = _label(labels, i)
            t = image_to_tensor(image, label)
            h, w = t.shape[-2:]
            if max(h, w) > out_res:
                raise InputFileError(f"{label} is {w}x{h} px, larger than this model's {out_res}x{out_res} output: "
                                     f"it upscales {r}x{r} frames x{self.sr_model.config.scale}. Pass a "
                                     f"low-resolution frame (or downscale it to {r}x{r} yourself).")
            t, note = fit_to_square(t, r, label, f"the model's {r}x{r} input", min_side=MIN_SIDE, task="upscale")
            batch.append(t.clamp(-1, 1))
            notes.append(note)
        return torch.stack(batch), notes

    def encode_prompt(self, prompt: str | Sequence[str | None] | None,
                      n: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Text embeddings [n, D] (rows without a caption are zeros) and keep [n] bool, or (None, all
        False) when no image has a caption or the model has no text input."""
        keep = torch.zeros(n, dtype=torch.bool)
        prompts = [prompt] * n if prompt is None or isinstance(prompt, str) else list(prompt)
        if not self.sr_model.config.text_dim or all(p is None or not str(p).strip() for p in prompts):
            return None, keep
        if self.hdvila is None or self.processor is None:
            raise CheckpointError("a caption was given, but the pipeline has no HD-VILA model to embed it; load the "
                                  "pipeline with its hdvila and processor components.")
        rows = [i for i, p in enumerate(prompts) if p is not None and str(p).strip()]
        from hdvila.processing_hdvila import TextTruncationWarning

        with warnings.catch_warnings():  # a cut caption is said in the output's notes (caption_notes), one
            warnings.simplefilter("ignore", TextTruncationWarning)  # line per image, not as this warning
            tok = self.processor.tokenize([str(prompts[i]) for i in rows])
        emb = self.hdvila.get_text_features(tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))
        text = torch.zeros(n, emb.shape[1], device=self.device, dtype=emb.dtype)
        text[rows] = emb
        keep[rows] = True
        return text, keep

    def caption_notes(self, prompt: str | Sequence[str | None] | None, n: int) -> list[str]:
        """One note per image: "" or, where its caption is longer than the text encoder reads, that
        only its first ``processor.max_length`` tokens are used (the caption is cut, not refused)."""
        prompts = [prompt] * n if prompt is None or isinstance(prompt, str) else list(prompt)
        if not self.sr_model.config.text_dim or self.processor is None:
            return [""] * n
        rows = [i for i, p in enumerate(prompts) if p is not None and str(p).strip()]
        notes = [""] * n
        if not rows:
            return notes
        m = self.processor.max_length
        for i, count in zip(rows, self.processor.token_counts([str(prompts[i]) for i in rows])):
            if count > m:
                notes[i] = (f"the caption has {count} tokens; only its first {m} are used (the text encoder reads "
                            f"at most {m}, [CLS] and [SEP] included): shorten it to what the image shows")
        return notes

    @torch.no_grad()
    def __call__(self, image: Any | Sequence[Any], prompt: str | Sequence[str | None] | None = None, scale: int = 4,
                 output_type: str = "pil", return_dict: bool = True, batch_size: int = 16,
                 labels: Sequence[str] | None = None, faces: str | None = None):
        """Upscale one image or a list. ``prompt``: one caption for all, one per image (None or ""
        for none), or None. ``faces``: None (each image is the model's LR frame), ``"largest"`` or
        ``"all"`` (the faces are aligned, super-resolved and pasted into the bicubic enlargement of the
        whole frame: the module docstring). SR is deterministic (the bank runs with its stored noise).
        Returns :class:`SRPipelineOutput` (``images`` as ``output_type``, by
        :meth:`~generation.pipeline_utils.Pipeline.postprocess`: 'pil' a list of RGB images, 'np' a
        float32 array [N, R, R, 3] in [0, 1] (as diffusers'; not uint8), 'pt' a float32 tensor
        [N, 3, R, R] in [-1, 1]; with ``faces``, frames of different sizes come as a list, one per image;
        ``notes``: what the input policy did to each image). ``return_dict=False``: its
        :meth:`~generation.pipeline_utils.PipelineOutput.to_tuple` (``[0]`` the images)."""
        batched = isinstance(image, (list, tuple)) or (isinstance(image, torch.Tensor) and image.ndim == 4)
        images = list(image) if batched else [image]
        self.check_inputs(images, prompt, scale)
        if faces is not None:
            return self._upscale_faces(images, prompt, scale=scale, output_type=output_type, return_dict=return_dict,
                                       batch_size=batch_size, labels=labels, faces=faces)
        lr, notes = self.prepare_images(images, labels)
        text, keep = self.encode_prompt(prompt, len(images))
        for i, cut in enumerate(self.caption_notes(prompt, len(images))):
            if cut:
                notes[i] = f"{notes[i].rstrip('.')}; {cut}" if notes[i] else f"{_label(labels, i)}: {cut}"
        outs = []
        for start in self.progress_bar(range(0, len(lr), batch_size)):
            sl = slice(start, start + batch_size)
            t = None if text is None else text[sl]
            outs.append(self.sr_model(lr[sl].to(self.device), self.generator, t,
                                      keep_text=None if t is None else keep[sl].to(self.device)).float().cpu())
        sr = torch.cat(outs).clamp(-1, 1)
        output = SRPipelineOutput(images=self.postprocess(sr, output_type), lr_images=lr, notes=notes)
        return output if return_dict else output.to_tuple()

    def _upscale_faces(self, images, prompt, *, scale, output_type, return_dict, batch_size, labels, faces):
        """``__call__`` with ``faces``: align every selected face at the LR size, super-resolve the crops
        in one call (the plain path), paste them into the bicubic enlargement of their frames."""
        from generation.faces.pipeline import align_faces, check_face_mode, check_upscaled_size, frames_output

        check_face_mode(faces)
        self.encode_prompt(prompt, len(images))  # a caption the model cannot take fails before the detector runs
        batch = align_faces(images, faces, self.lr_resolution, labels)
        for frame, label in zip(batch.frames, batch.labels):
            check_upscaled_size(frame.shape[-2], frame.shape[-1], scale, label)
        out = self(list(batch.crops), prompt=batch.per_crop(prompt), scale=scale, output_type="pt",
                   batch_size=batch_size, labels=batch.crop_labels)
        records = batch.records(out.images, scale=scale)
        frames = batch.paste(records, scale=scale)
        notes = [f"{_label(labels, i)}: {cut}" if cut else ""
                 for i, cut in enumerate(self.caption_notes(prompt, len(images)))]
        output = SRPipelineOutput(images=frames_output(frames, output_type, self.postprocess), lr_images=out.lr_images,
                                  notes=notes, faces=records)
        return output if return_dict else output.to_tuple()
