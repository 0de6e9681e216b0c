"""Video output: mp4 (H.264, yuv420p) through PyAV, written atomically.

Reading goes through decord in :mod:`hdvila.processing_hdvila` (seek-friendly sparse sampling).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from hdvila.atomic import atomic_path
from hdvila.tensors import unit_to_uint8


def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray, fps: float = 8.0, crf: int = 12) -> Path:
    """Write ``frames`` to an .mp4 atomically and return the path.

    ``frames``: float tensor [T, 3, H, W] in [-1, 1], or uint8 array [T, H, W, 3]. H and W must be
    even (yuv420p). ``crf`` 12 keeps the demo domain's 4-pixel patterns intact.
    """
    import av

    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
        frames = unit_to_uint8(frames).permute(0, 2, 3, 1).cpu().numpy()
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need at least one frame with even height and width, got {frames.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
    return path
