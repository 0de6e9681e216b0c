"""Faces in real photos and clips, for an FFHQ generator: detect, align as FFHQ, paste back.

    faces = detect_faces(image)                        # [Face]: box, score, 5 landmarks; largest first
    for face in select_faces(faces, "largest"):        # or "all"
        aligned = align_face(image, face, size=1024)   # aligned.crop [3, 1024, 1024] in [-1, 1]
        image = paste_back(image, aligned, edited)     # edited crop back in; outside the mask, untouched
    aligned.write_json("photo.face0.json")             # box, landmarks, quad, matrix (a sidecar)

    crops = align_clip(frames, size=1024)              # a clip: one tracked face, smoothed landmarks

Images are float tensors [3, H, W] in [-1, 1] (PIL images, paths and uint8 HxWx3 arrays are
accepted too); coordinates are image pixels with pixel centres at integers. Detection needs
``facenet-pytorch`` (``pip install --no-deps facenet-pytorch==2.6.0``; see :mod:`.detect`).
"""

from generation.faces.align import AlignedFace, align_face, apply_matrix, ffhq_quad, quad_to_matrix
from generation.faces.detect import (
    MIN_EYE_DISTANCE,
    MIN_SCORE,
    DetectorMissingError,
    Face,
    FaceError,
    FaceTooSmallError,
    NoFaceError,
    detect_faces,
    load_detector,
    select_faces,
)
from generation.faces.paste import paste_back, paste_mask
from generation.faces.video import FaceTrack, align_clip, smooth_landmarks, track_face

__all__ = [
    "MIN_EYE_DISTANCE", "MIN_SCORE", "AlignedFace", "DetectorMissingError", "Face", "FaceError", "FaceTooSmallError",
    "FaceTrack", "NoFaceError", "align_clip", "align_face", "apply_matrix", "detect_faces", "ffhq_quad",
    "load_detector", "paste_back", "paste_mask", "quad_to_matrix", "select_faces", "smooth_landmarks", "track_face",
]
