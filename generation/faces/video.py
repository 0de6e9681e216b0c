"""Faces in clips: one face tracked through the frames, its landmarks smoothed in time, every frame
aligned with the smoothed landmarks so the crops do not jitter.

Tracking (:func:`track_face`): the largest face of the first frame that has one; in each later
frame, the detection whose box overlaps the last tracked box most (IoU >= 0.3). Frames where it is
not found hold NaN.

Smoothing (:func:`smooth_landmarks`): a centred Gaussian-weighted local polynomial fit (a
Savitzky-Golay filter with Gaussian weights): each frame's value is the value at that frame of a
degree-``degree`` polynomial in time fitted by least squares over frames ``t +- 3 sigma``, weighted
by ``exp(-(s - t)^2 / 2 sigma^2)``. No lag, and at the clip's ends no pull towards the inside (a
plain moving average has both). Degree 2 (the default) follows a head that turns or accelerates
(degree 1 rounds such motion off: on the test clip of ``tests/test_faces.py`` the true landmarks,
smoothed with sigma 3, drift by 2.1 px of a 256 px crop with degree 1 and 0.2 px with degree 2);
degree 1 removes more noise. White detector noise is divided by 2.5 (degree 2) or 3.3 (degrees 0
and 1) at sigma 3, and by 2.0 or 2.7 at sigma 2; frame-to-frame jitter far more (the fit passes
only slow changes). Missing frames (NaN) are first filled by linear interpolation between the
nearest frames that have the face (held at the clip's ends), then smoothed with the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from generation.faces.align import AlignedFace, Padding, align_face
from generation.faces.detect import (
    MIN_EYE_DISTANCE,
    MIN_SCORE,
    Face,
    FaceTooSmallError,
    NoFaceError,
    detect_faces,
)

#: Default smoothing width (frames): 3 frames is 0.1 s at 30 fps.
SMOOTH_SIGMA = 3.0
SMOOTH_DEGREE = 2
MIN_IOU = 0.3


@dataclass(eq=False)
class FaceTrack:
    """One face through a clip of T frames: ``landmarks`` float64 [T, 5, 2] and ``boxes`` [T, 4]
    (image px; NaN where not found), ``scores`` [T] (NaN where not found), ``found`` bool [T]."""

    landmarks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.landmarks).all(axis=(1, 2))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _frames(frames: Any) -> Sequence[Any]:
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"a clip tensor must be [T, 3, H, W] in [-1, 1], got {tuple(frames.shape)}")
    return frames


def track_face(frames: Any, *, min_eye_distance: float = MIN_EYE_DISTANCE, min_score: float = MIN_SCORE,
               name: str | None = None) -> FaceTrack:
    """Detect faces in every frame and follow one (the module docstring). ``frames``: a float tensor
    [T, 3, H, W] in [-1, 1] or a sequence of images. Raises :class:`NoFaceError` when no frame has a
    face and :class:`FaceTooSmallError` when the face's median eye distance is under the minimum."""
    frames = _frames(frames)
    label = name or "clip"
    t_count = len(frames)
    lms = np.full((t_count, 5, 2), np.nan)
    boxes = np.full((t_count, 4), np.nan)
    scores = np.full(t_count, np.nan)
    last: Face | None = None
    any_face = False
    for t in range(t_count):
        faces = detect_faces(frames[t], min_eye_distance=0.0, min_score=min_score, required=False,
                             name=f"{label} frame {t}")
        any_face |= bool(faces)
        if last is None:
            pick = faces[0] if faces else None
        else:
            overlaps = [(_iou(f.box, last.box), f) for f in faces]
            best = max(overlaps, key=lambda o: o[0], default=(0.0, None))
            pick = best[1] if best[0] >= MIN_IOU else None
        if pick is not None:
            lms[t], boxes[t], scores[t], last = pick.landmarks, pick.box, pick.score, pick
    if not any_face:
        raise NoFaceError(f"{label}: no face found in any of its {t_count} frames; use a clip with a face seen from "
                          f"the front or three-quarters, at least {min_eye_distance:.0f} px between the eyes.")
    track = FaceTrack(landmarks=lms, boxes=boxes, scores=scores)
    eye = np.hypot(*(lms[track.found, 1] - lms[track.found, 0]).T)
    if np.median(eye) < min_eye_distance:
        raise FaceTooSmallError(f"{label}: the tracked face has {np.median(eye):.0f} px between the eyes (median over "
                                f"frames), under the {min_eye_distance:.0f} px needed to align it; use a larger or "
                                f"sharper clip.")
    return track


def smooth_landmarks(landmarks: Any, sigma: float = SMOOTH_SIGMA, degree: int = SMOOTH_DEGREE) -> np.ndarray:
    """Temporal smoothing of ``landmarks`` [T, ...] (e.g. [T, 5, 2], image px; NaN = missing) ->
    float64, same shape, no NaN (the module docstring). ``sigma`` in frames (0: only fill gaps);
    ``degree`` 0 (Gaussian average), 1 (local line) or 2 (local parabola, the default)."""
    y = np.asarray(landmarks, dtype=np.float64)
    shape = y.shape
    t_count = shape[0]
    y = y.reshape(t_count, -1)
    valid = np.isfinite(y).all(axis=1)
    if not valid.any():
        raise ValueError("no frame has landmarks to smooth")
    if degree not in (0, 1, 2):
        raise ValueError(f"degree must be 0, 1 or 2, got {degree}")
    times = np.arange(t_count, dtype=np.float64)
    filled = y.copy()
    if not valid.all():
        for k in range(y.shape[1]):
            filled[:, k] = np.interp(times, times[valid], y[valid, k])
    if sigma <= 0 or t_count == 1:
        return filled.reshape(shape)
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    idx = np.arange(t_count)[:, None] + offsets[None, :]                      # [T, K]
    inside = (idx >= 0) & (idx < t_count)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)[None, :] * inside              # [T, K]
    deg = min(degree, t_count - 1)
    basis = np.stack([offsets.astype(np.float64) ** p for p in range(deg + 1)], -1)  # [K, P]
    gram = np.einsum("tk,kp,kq->tpq", w, basis, basis)                        # [T, P, P]
    rhs = np.einsum("tk,kp,tkc->tpc", w, basis, filled[idx.clip(0, t_count - 1)])  # [T, P, C]
    coef = np.linalg.solve(gram, rhs)                                          # [T, P, C]
    return coef[:, 0].reshape(shape)


def align_clip(frames: Any, size: int = 1024, *, sigma: float = SMOOTH_SIGMA, degree: int = SMOOTH_DEGREE,
               padding: Padding = "fade", track: FaceTrack | None = None, min_eye_distance: float = MIN_EYE_DISTANCE,
               name: str | None = None) -> list[AlignedFace]:
    """Align every frame of a clip on one tracked face with smoothed landmarks -> one
    :class:`AlignedFace` per frame (crops [3, size, size] in [-1, 1]; ``box``/``score`` are the
    frame's detection, None where the face was not found in that frame).

    ``frames``: float tensor [T, 3, H, W] in [-1, 1] or a sequence of images; ``track``: a
    :func:`track_face` result to reuse (else it is computed). The crops of a long clip at 1024 px
    take 12 MiB each: for hundreds of frames, call :func:`track_face`, :func:`smooth_landmarks` and
    :func:`~generation.faces.align.align_face` one frame at a time instead."""
    frames = _frames(frames)
    track = track if track is not None else track_face(frames, min_eye_distance=min_eye_distance, name=name)
    if len(track.landmarks) != len(frames):
        raise ValueError(f"the track has {len(track.landmarks)} frames, the clip {len(frames)}")
    smooth = smooth_landmarks(track.landmarks, sigma=sigma, degree=degree)
    out = []
    for t in range(len(frames)):
        aligned = align_face(frames[t], smooth[t], size, padding=padding, name=f"{name or 'clip'} frame {t}")
        if track.found[t]:
            aligned.box, aligned.score = tuple(float(v) for v in track.boxes[t]), float(track.scores[t])
        out.append(aligned)
    return out
