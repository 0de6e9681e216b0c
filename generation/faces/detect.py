"""Face detection on real photos: MTCNN (``facenet-pytorch``) boxes and five landmarks.

``facenet-pytorch==2.6.0`` ships the MTCNN weights inside its wheel (nothing is downloaded). Its
pins are older than this project's (torch<2.3, numpy<2, Pillow<10.3), so it is installed without
them: ``pip install --no-deps facenet-pytorch==2.6.0`` (``make setup`` does). It is imported on
first use; without it :func:`detect_faces` raises :class:`DetectorMissingError` saying so.

The detector always runs on the CPU, in eval mode and without gradients, on a uint8 HxWx3 copy
of the image (MTCNN's numpy path; its PIL path fails under numpy 2): the same image gives the same
faces. About 0.2 s for a 512 px photo and 0.4-0.5 s for a 1024 px frame on one thread
(``benchmarks/bench_faces.py``).

Coordinates are image pixels with pixel centres at integers (x to the right, y down), as MTCNN
gives them. The five landmarks, in this order: left eye, right eye, nose, mouth left, mouth right,
"left" meaning the image's left (the person's right eye). MTCNN's eye point is the pupil; the FFHQ
recipe's is the mean of the eye contour (see :mod:`generation.faces.align` for what that costs).

Minimum face size: :data:`MIN_EYE_DISTANCE` px between the two eye points (a face box of about
35 px, an FFHQ square of about 64 px). Below that, a landmark 1.6 px off is a tenth of the eye
distance (the crop's angle and scale follow it), and a 1024 px crop is upsampled more than 16x;
such faces are left out, and when they are all there is :class:`FaceTooSmallError`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch

from hdvila.errors import UserError

#: Smallest distance between the two eye points (image px) of a face that is kept.
MIN_EYE_DISTANCE = 16.0
#: Smallest MTCNN probability of a face that is kept (real faces score 0.99 and more).
MIN_SCORE = 0.9
#: MTCNN's own smallest face box side (px) searched for: small enough to see faces below the
#: minimum above, so that they can be reported as too small rather than as absent.
DETECTOR_MIN_FACE = 20
INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


class FaceError(UserError):
    """No usable face in an image or clip."""


class NoFaceError(FaceError):
    """The detector found no face."""


class FaceTooSmallError(FaceError):
    """Faces were found, but all are below :data:`MIN_EYE_DISTANCE`."""


class DetectorMissingError(UserError):
    """``facenet-pytorch`` is not installed."""


@dataclass(eq=False)
class Face:
    """One detected face.

    ``box``: (x0, y0, x1, y1) image px; ``score``: the detector's probability in [0, 1];
    ``landmarks``: float64 [5, 2] (x, y) image px: left eye, right eye, nose, mouth left, mouth right.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    def __post_init__(self):
        self.box = tuple(float(v) for v in self.box)
        self.score = float(self.score)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(5, 2)

    @property
    def eye_distance(self) -> float:
        """Distance between the two eye points, image px."""
        return float(np.hypot(*(self.landmarks[1] - self.landmarks[0])))

    @property
    def area(self) -> float:
        """Area of the box, px^2."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": self.score, "landmarks": self.landmarks.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Face":
        return cls(box=tuple(d["box"]), score=d["score"], landmarks=np.asarray(d["landmarks"]))


_DETECTOR = None
_DETECTOR_LOCK = threading.Lock()


def load_detector():
    """The process's one MTCNN (CPU, eval), built on first use (about 1 s, mostly imports)."""
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError:
                raise DetectorMissingError(f"face detection needs facenet-pytorch, which is not installed: run "
                                           f"`{INSTALL_HINT}` (--no-deps: its pins are older than this project's "
                                           f"torch, numpy and Pillow), or `make setup`.") from None
            _DETECTOR = MTCNN(keep_all=True, min_face_size=DETECTOR_MIN_FACE, device="cpu").eval()
        return _DETECTOR


def as_uint8_rgb(image: Any, label: str = "image") -> np.ndarray:
    """Any image this project accepts (see :func:`generation.pipeline_utils.image_to_tensor`:
    PIL, path, bytes, uint8 HxWx3 array, float tensor [3, H, W] / [1, 3, H, W] in [-1, 1])
    -> a contiguous uint8 HxWx3 array."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    from generation.pipeline_utils import image_to_tensor
    from hdvila.tensors import unit_to_uint8

    return unit_to_uint8(image_to_tensor(image, label)).permute(1, 2, 0).cpu().numpy()


def detect_faces(image: Any, *, min_eye_distance: float = MIN_EYE_DISTANCE, min_score: float = MIN_SCORE,
                 required: bool = True, name: str | None = None) -> list[Face]:
    """The faces in ``image``, largest box first.

    ``image``: PIL, path, bytes, uint8 HxWx3 array or float tensor [3, H, W] in [-1, 1].
    Faces scoring under ``min_score`` are dropped, and so are faces cut by the image's edge (a
    landmark outside the image: MTCNN guesses where cut-off eyes would be) and faces with fewer
    than ``min_eye_distance`` px between the eyes. When nothing is left: with ``required`` (the default)
    :class:`NoFaceError` (no face at all) or :class:`FaceTooSmallError` (only small ones), whose
    one-line messages start with ``name``; without it, an empty list.
    """
    label = name or "image"
    arr = as_uint8_rgb(image, label)
    h, w = arr.shape[:2]
    faces = _run_detector(arr)
    scored = [f for f in faces if f.score >= min_score]
    found = [f for f in scored if _landmarks_inside(f, w, h)]
    kept = [f for f in found if f.eye_distance >= min_eye_distance]
    if not kept and required:
        if scored and not found:
            raise NoFaceError(f"{label}: the only face found is cut by the image's edge (its eyes or mouth lie outside "
                              f"the image); use a photo that shows the whole face.")
        if found:
            biggest = max(f.eye_distance for f in found)
            raise FaceTooSmallError(f"{label}: the largest face found has {biggest:.0f} px between the eyes, under the "
                                    f"{min_eye_distance:.0f} px needed to align it; use a larger or sharper photo "
                                    f"(or one cropped closer to the face).")
        raise NoFaceError(f"{label}: no face found in this {w}x{h} image; use a photo with a face seen from the front "
                          f"or three-quarters, upright, at least {min_eye_distance:.0f} px between the eyes.")
    return sorted(kept, key=lambda f: -f.area)


def _landmarks_inside(face: Face, w: int, h: int, tolerance: float = 2.0) -> bool:
    """Whether all five points lie in the image (MTCNN extrapolates the eyes of a face cut by the edge)."""
    lm = face.landmarks
    return bool((lm >= -tolerance).all() and (lm[:, 0] <= w - 1 + tolerance).all()
                and (lm[:, 1] <= h - 1 + tolerance).all())


def _run_detector(arr: np.ndarray) -> list[Face]:
    """Every face MTCNN reports for one uint8 HxWx3 array, unfiltered."""
    h, w = arr.shape[:2]
    if min(h, w) < 12:  # MTCNN's first stage needs 12 px; nothing smaller can hold a face
        return []
    detector = load_detector()
    with torch.inference_mode():
        boxes, probs, points = detector.detect(arr, landmarks=True)
    if boxes is None:
        return []
    return [Face(box=tuple(b), score=float(p), landmarks=np.asarray(lm, dtype=np.float64))
            for b, p, lm in zip(boxes, probs, points)]


def select_faces(faces: Sequence[Face], mode: Literal["largest", "all"] = "largest", *,
                 name: str | None = None) -> list[Face]:
    """``"largest"``: a list of the one face with the largest box; ``"all"``: every face, largest
    first. An empty ``faces`` raises :class:`NoFaceError`."""
    if mode not in ("largest", "all"):
        raise UserError(f"face selection must be 'largest' or 'all', got {mode!r}.")
    if not faces:
        raise NoFaceError(f"{name or 'image'}: no face to select; use a photo with a visible, upright face.")
    ordered = sorted(faces, key=lambda f: -f.area)
    return ordered[:1] if mode == "largest" else ordered
