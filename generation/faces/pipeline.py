"""Faces in the edit and upscale pipelines: find, align, hand the crops to the pipeline, paste back.

The one place where :class:`~generation.editing.pipeline_edit.EditPipeline`, :class:`~generation.
superres.pipeline_sr.SRPipeline` and the commands' video paths (``hdvila edit|upscale --faces``, the
web UI's "Align faces") meet :mod:`generation.faces`::

    batch = align_faces(images, "largest", size=R)       # detect, select, align every image: crops [M, 3, R, R]
    edited = <the pipeline on batch.crops>               # one row per face, image by image
    frames = batch.paste(edited)                         # each frame with its faces pasted back, full size

For upscaling, the frame is first enlarged bicubically by the model's factor (:func:`upscale_frame`)
and the super-resolved face pasted into that (:func:`scale_alignment` moves the alignment there), as
face-restoration tools do. Clips (:func:`align_clip_faces`, :func:`paste_clip`) follow one tracked
face with smoothed landmarks (:func:`generation.faces.align_clip`), so the pasted face does not
jitter.

An image with no usable face raises :class:`~generation.faces.NoFaceError` (or
:class:`~generation.faces.FaceTooSmallError`): a one-line :class:`~hdvila.errors.UserError` naming
the file. Nothing is ever passed through unedited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from generation.faces.align import AlignedFace, apply_matrix, quad_to_matrix
from hdvila.errors import InputFileError, UserError

FACE_MODES = ("largest", "all")
#: What ``--faces`` does to an input, for the CLI's sidecar (``{r}``: the aligned size; ``{task}``).
FACE_POLICY = ("faces are detected (MTCNN), aligned as FFHQ at {r}x{r}, {task} and pasted back into the whole "
               "frame through the inverse alignment with a feathered mask; the frame keeps its size{scaled}, and "
               "outside the mask its pixels are the input's")


def check_face_mode(mode: str) -> str:
    """``mode`` if it is ``"largest"`` or ``"all"``, else a :class:`UserError`."""
    if mode not in FACE_MODES:
        raise UserError(f"faces must be 'largest' or 'all' (or None for no face alignment), got {mode!r}.")
    return mode


@dataclass(eq=False)
class FaceRecord:
    """One face of one image, through a pipeline.

    ``aligned``: where it was found and how it was cut (``aligned.crop``: the aligned input crop
    [3, r, r] in [-1, 1]); ``output``: the pipeline's crop for it (the edit, or the super-resolved
    face) [3, R, R]; ``index``: its rank in the image (0: the largest); ``inversion_psnr``: dB of the
    reconstruction of the crop (edits); ``placed``: where ``output`` was pasted when that is not where
    it was found (upscaling: the enlarged frame)."""

    aligned: AlignedFace
    output: torch.Tensor
    index: int = 0
    inversion_psnr: float | None = None
    placed: AlignedFace | None = None

    def to_json(self) -> dict[str, Any]:
        """Box, score, landmarks, quad and matrix (:meth:`AlignedFace.to_json`), the face's index, the
        inversion PSNR (edits) and, for upscaling, where the output went (``output``)."""
        d: dict[str, Any] = {"index": self.index, **self.aligned.to_json()}
        if self.inversion_psnr is not None:
            d["inversion_psnr_db"] = round(float(self.inversion_psnr), 3)
        if self.placed is not None:
            d["output"] = {"size": int(self.output.shape[-1]), "image_size": list(self.placed.image_size),
                           "quad": self.placed.quad.tolist(), "matrix": self.placed.matrix.tolist()}
        return d


@dataclass(eq=False)
class FaceBatch:
    """Images and the faces aligned in them: ``frames`` [3, H, W] in [-1, 1] (CPU), ``faces`` the
    :class:`AlignedFace` of each image (largest first), ``labels`` each image's name."""

    frames: list[torch.Tensor]
    faces: list[list[AlignedFace]]
    labels: list[str]

    @property
    def owners(self) -> list[int]:
        """The image index of each crop, in the order of :attr:`crops`."""
        return [i for i, faces in enumerate(self.faces) for _ in faces]

    @property
    def crops(self) -> torch.Tensor:
        """Every aligned crop, image by image: [M, 3, r, r] in [-1, 1]."""
        return torch.stack([a.crop for faces in self.faces for a in faces])

    @property
    def crop_labels(self) -> list[str]:
        """"LABEL" for an image's only face, "LABEL face K" (1-based) where it has several."""
        return [label if len(faces) == 1 else f"{label} face {k + 1}"
                for label, faces in zip(self.labels, self.faces) for k in range(len(faces))]

    def per_crop(self, value: Any) -> Any:
        """A per-image argument (a list, one per image) as one per crop; anything else unchanged."""
        if isinstance(value, (list, tuple)):
            return [value[i] for i in self.owners]
        return value

    def records(self, outputs: torch.Tensor, *, psnrs: Sequence[float] | None = None,
                scale: int = 1) -> list[list[FaceRecord]]:
        """Per image, a :class:`FaceRecord` per face for the pipeline's crops ``outputs`` [M, 3, R, R]
        (in the order of :attr:`crops`). ``scale`` > 1: the outputs go into the frame enlarged by it."""
        out, k = [], 0
        for faces in self.faces:
            recs = []
            for j, aligned in enumerate(faces):
                placed = None if scale == 1 else scale_alignment(aligned, scale, int(outputs.shape[-1]))
                recs.append(FaceRecord(aligned=aligned, output=outputs[k].detach().float().cpu(), index=j,
                                       inversion_psnr=None if psnrs is None else float(psnrs[k]), placed=placed))
                k += 1
            out.append(recs)
        return out

    def paste(self, records: list[list[FaceRecord]], scale: int = 1) -> list[torch.Tensor]:
        """Each frame (enlarged bicubically by ``scale`` first) with its records' outputs pasted back."""
        out = []
        for frame, recs in zip(self.frames, records):
            base = upscale_frame(frame, scale)
            for r in recs:
                base = paste_back_face(base, r.placed or r.aligned, r.output)
            out.append(base)
        return out


def align_faces(images: Sequence[Any], mode: str, size: int, labels: Sequence[str] | None = None) -> FaceBatch:
    """Detect the faces of every image (PIL, path, uint8 HxWx3 array or tensor [3, H, W] in [-1, 1]),
    select them (``mode``: "largest" or "all") and align each as FFHQ at ``size`` px. An image
    without a usable face raises :class:`~generation.faces.NoFaceError` /
    :class:`~generation.faces.FaceTooSmallError` naming it (``labels``; default "image K")."""
    from generation.faces.align import align_face
    from generation.faces.detect import detect_faces, select_faces
    from generation.pipeline_utils import image_to_tensor

    check_face_mode(mode)
    if not images:
        raise InputFileError("no image given.")
    frames, faces, names = [], [], []
    for i, image in enumerate(images):
        label = labels[i] if labels else f"image {i + 1}"
        t = image_to_tensor(image, label).detach().float().cpu()
        chosen = select_faces(detect_faces(t, name=label), mode, name=label)
        frames.append(t)
        faces.append([align_face(t, f, size, name=label) for f in chosen])
        names.append(label)
    return FaceBatch(frames=frames, faces=faces, labels=names)


def paste_back_face(frame: torch.Tensor, aligned: AlignedFace, crop: torch.Tensor) -> torch.Tensor:
    """``crop`` pasted into ``frame`` where ``aligned`` says (:func:`generation.faces.paste_back`)."""
    from generation.faces.paste import paste_back

    return paste_back(frame, aligned, crop.to(frame.device))


def scale_alignment(aligned: AlignedFace, scale: int, size: int) -> AlignedFace:
    """``aligned`` moved into its frame enlarged ``scale`` times by :func:`upscale_frame`, for a crop of
    ``size`` px: a pixel centre x goes to ``scale * x + (scale - 1) / 2`` (the bicubic enlargement's
    sampling grid, align_corners=False); no crop is carried."""
    s = float(scale)
    m = np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]])
    quad = apply_matrix(m, aligned.quad)
    box = None
    if aligned.box is not None:
        x0, y0, x1, y1 = aligned.box
        (bx0, by0), (bx1, by1) = apply_matrix(m, np.array([[x0, y0], [x1, y1]]))
        box = (bx0, by0, bx1, by1)
    h, w = aligned.image_size
    return AlignedFace(crop=None, size=size, image_size=(h * scale, w * scale), quad=quad,
                       matrix=quad_to_matrix(quad, size), landmarks=apply_matrix(m, aligned.landmarks), box=box,
                       score=aligned.score)


def upscale_frame(frame: torch.Tensor, scale: int) -> torch.Tensor:
    """[3, H, W] in [-1, 1] -> [3, H * scale, W * scale], bicubic (the super-resolution baseline)."""
    from generation.superres.losses import upsample_bicubic

    return frame if scale == 1 else upsample_bicubic(frame[None].float(), scale)[0]


def check_upscaled_size(height: int, width: int, scale: int, label: str, max_pixels: int | None = None) -> None:
    """Refuse a frame whose enlargement would exceed the image limit (40 MP by default)."""
    from hdvila.imageio import DEFAULT_MAX_PIXELS

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    pixels = height * width * scale * scale
    if pixels > limit:
        raise InputFileError(f"{label} is {width}x{height} px: x{scale} it would be {width * scale}x{height * scale} "
                             f"= {pixels:,} pixels, above the limit of {limit:,}; crop or downscale it first.")


def stack_or_list(frames: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """Frames [3, H, W] -> one batch [N, 3, H, W] when they share a size, else the list as it is."""
    if len({tuple(f.shape) for f in frames}) == 1:
        return torch.stack(frames)
    return frames


def frames_output(frames: list[torch.Tensor], output_type: str, postprocess) -> Any:
    """The pipeline's ``images`` for full frames of possibly different sizes: ``postprocess`` (the
    pipeline's) of the batch when they share a size, else a list of each frame's own ('pil': a list
    of images either way)."""
    stacked = stack_or_list(frames)
    if isinstance(stacked, torch.Tensor):
        return postprocess(stacked, output_type)
    each = [postprocess(f[None], output_type) for f in frames]
    return [e[0] for e in each]


def combine_notes(batch: FaceBatch, crop_notes: Sequence[str]) -> list[str]:
    """One note per image from its faces' notes ("" where none)."""
    per_image: list[list[str]] = [[] for _ in batch.frames]
    for owner, note in zip(batch.owners, crop_notes):
        if note:
            per_image[owner].append(note)
    return ["; ".join(n) for n in per_image]


# ---- clips ---------------------------------------------------------------------------------------------
def align_clip_faces(frames: np.ndarray | torch.Tensor | Sequence[Any], size: int, mode: str = "largest", *,
                     name: str = "clip") -> list[AlignedFace]:
    """One face tracked through a clip (the largest of the first frame that has one), its landmarks
    smoothed in time, every frame aligned at ``size`` (:func:`generation.faces.align_clip`): one
    :class:`AlignedFace` per frame. ``frames``: uint8 [T, H, W, 3] (as videos are read), a float
    tensor [T, 3, H, W] in [-1, 1] or a sequence of images. A clip follows one face: ``mode`` "all"
    is refused, and a clip with no face raises :class:`~generation.faces.NoFaceError`."""
    from generation.faces.video import align_clip

    check_face_mode(mode)
    if mode == "all":
        raise UserError(f"{name}: a clip is processed on one tracked face (the largest in its first frame with a "
                        f"face); --faces all is for images: use --faces largest.")
    seq = list(frames) if isinstance(frames, np.ndarray) else frames
    return align_clip(seq, size, name=name)


def paste_clip(frames: np.ndarray, aligned: Sequence[AlignedFace], crops: torch.Tensor, scale: int = 1
               ) -> np.ndarray:
    """uint8 frames [T, H, W, 3] with ``crops`` [T, 3, R, R] (one per frame, in [-1, 1]) pasted back where
    ``aligned`` says, each frame first enlarged bicubically by ``scale`` -> uint8 [T, H*s, W*s, 3], one
    frame at a time (a long clip never holds all its frames as floats)."""
    from hdvila.tensors import uint8_to_unit, unit_to_uint8

    t, h, w, _ = frames.shape
    if len(aligned) != t or len(crops) != t:
        raise ValueError(f"{t} frames, {len(aligned)} alignments and {len(crops)} crops")
    out = np.empty((t, h * scale, w * scale, 3), np.uint8)
    for i in range(t):
        frame = upscale_frame(uint8_to_unit(torch.from_numpy(np.ascontiguousarray(frames[i])).permute(2, 0, 1)), scale)
        where = aligned[i] if scale == 1 else scale_alignment(aligned[i], scale, int(crops.shape[-1]))
        out[i] = unit_to_uint8(paste_back_face(frame, where, crops[i])).permute(1, 2, 0).numpy()
    return out


@dataclass(eq=False)
class ClipFaces:
    """A clip's face through a pipeline, for the sidecar and the UI: ``aligned`` (per frame, with the
    crops), ``outputs`` [T, 3, R, R] (the edited or super-resolved crops), ``scale`` (1 for edits)."""

    aligned: list[AlignedFace]
    outputs: torch.Tensor
    scale: int = 1

    def to_json(self) -> list[dict[str, Any]]:
        """Per frame: box and score (None where the detector missed the face that frame), the smoothed
        landmarks, quad and matrix."""
        return [FaceRecord(aligned=a, output=self.outputs[i], placed=None if self.scale == 1 else
                           scale_alignment(a, self.scale, int(self.outputs.shape[-1]))).to_json()
                for i, a in enumerate(self.aligned)]

    def preview(self, pasted: np.ndarray) -> dict[str, Any]:
        """The middle frame's index (``frame``), aligned crop, output, and the pasted-back frame from
        ``pasted`` (uint8 [T, H, W, 3]) as float [3, ., .] in [-1, 1], for display."""
        from hdvila.tensors import uint8_to_unit

        i = len(self.aligned) // 2
        return {"frame": i, "crop": self.aligned[i].crop.cpu(), "output": self.outputs[i].cpu(),
                "pasted": uint8_to_unit(torch.from_numpy(np.ascontiguousarray(pasted[i])).permute(2, 0, 1))}
