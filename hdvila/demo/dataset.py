"""Deterministic samplers and PyTorch datasets of the demo domain (rendered on the fly, no disk).

An item is a pure function of ``(split, seed, index)``. Splits: ``train`` and ``val`` draw from the
same attribute combinations (different items); ``test`` draws only (shape, colour, pattern)
combinations that ``train`` and ``val`` never contain, so test retrieval and generation measure
generalisation to unseen combinations. Every single attribute value still occurs in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from hdvila.demo.attributes import (
    BACKGROUNDS,
    COLORS,
    GROW_RANGE,
    MOTIONS,
    PATTERNS,
    POSITION_CELLS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    TEMPORAL_MOTIONS,
    ImageSpec,
    VideoSpec,
)
from hdvila.demo.captions import caption_image, caption_video
from hdvila.demo.render import render_image, render_video

SPLITS = {"train": 0, "val": 1, "test": 2}
_IMAGE, _VIDEO = 0, 1
MOTION_TRAVEL = 0.22      # moving objects travel centre +- this fraction of the side
POSITION_JITTER = 0.03
COLOR_JITTER = 6
ROTATION = 135.0


def is_test_combination(shape: str, color: str, pattern: str) -> bool:
    """True for the (shape, colour, pattern) combinations reserved for the test split (~1/7)."""
    code = (SHAPES.index(shape) * len(COLORS) + list(COLORS).index(color)) * len(PATTERNS) + PATTERNS.index(pattern)
    return (code * 37 + 11) % 7 == 0


def _rng(split: str, seed: int, index: int, kind: int, stream: int = 0) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if index < 0:
        raise IndexError(f"index must be >= 0, got {index}")
    return np.random.default_rng([SPLITS[split], seed, index, kind, stream])


def _choice(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _object_attributes(rng: np.random.Generator, split: str) -> tuple[str, str, str]:
    want_test = split == "test"
    while True:  # rejection sampling: deterministic given rng
        shape, color, pattern = _choice(rng, SHAPES), _choice(rng, COLORS), _choice(rng, PATTERNS)
        if is_test_combination(shape, color, pattern) == want_test:
            return shape, color, pattern


def _jitter(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3))


def sample_image_spec(split: str, seed: int, index: int) -> ImageSpec:
    """The image spec of item ``index`` of ``split``."""
    rng = _rng(split, seed, index, _IMAGE)
    shape, color, pattern = _object_attributes(rng, split)
    background, size = _choice(rng, BACKGROUNDS), _choice(rng, SIZES)
    row, col = int(rng.integers(3)), int(rng.integers(3))
    cx = POSITION_CELLS[col] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    cy = POSITION_CELLS[row] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    radius = SIZE_RADIUS[size] * rng.uniform(0.93, 1.07)
    return ImageSpec(shape=shape, color=color, background=background, size=size, pattern=pattern,
                     cx=float(cx), cy=float(cy), row=row, col=col, radius=float(radius),
                     angle=float(rng.uniform(-20, 20)), color_jitter=_jitter(rng))


def sample_video_spec(split: str, seed: int, index: int, num_frames: int = 32) -> VideoSpec:
    """The video spec of item ``index`` of ``split``."""
    rng = _rng(split, seed, index, _VIDEO)
    shape, color, pattern = _object_attributes(rng, split)
    background, motion = _choice(rng, BACKGROUNDS), _choice(rng, MOTIONS)
    while motion == "rotate" and shape == "circle" and pattern == "plain":  # an invisible rotation
        motion = _choice(rng, MOTIONS)
    size = None if motion in ("grow", "shrink") else _choice(rng, SIZES)
    cx = POSITION_CELLS[int(rng.integers(3))] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    cy = POSITION_CELLS[int(rng.integers(3))] + rng.uniform(-POSITION_JITTER, POSITION_JITTER)
    start, end = (cx, cy), (cx, cy)
    t = MOTION_TRAVEL
    if motion == "left":
        start, end = (0.5 + t, cy), (0.5 - t, cy)
    elif motion == "right":
        start, end = (0.5 - t, cy), (0.5 + t, cy)
    elif motion == "up":
        start, end = (cx, 0.5 + t), (cx, 0.5 - t)
    elif motion == "down":
        start, end = (cx, 0.5 - t), (cx, 0.5 + t)
    if motion in ("grow", "shrink"):
        start = end = (0.5 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08))
        r0, r1 = GROW_RANGE if motion == "grow" else GROW_RANGE[::-1]
    else:
        r0 = r1 = SIZE_RADIUS[size] * rng.uniform(0.93, 1.07)
    angle = float(rng.uniform(-20, 20))
    # 135 degrees: no shape here has that symmetry, so the end pose differs from the start.
    angle_end = angle + (ROTATION if rng.random() < 0.5 else -ROTATION) if motion == "rotate" else angle
    end_color = switch = None
    if motion == "recolor":
        end_color = _choice(rng, [c for c in COLORS if c != color])
        switch = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
    return VideoSpec(shape=shape, color=color, background=background, size=size, pattern=pattern, motion=motion,
                     num_frames=num_frames, start=(float(start[0]), float(start[1])),
                     end=(float(end[0]), float(end[1])), radius_start=float(r0), radius_end=float(r1),
                     angle_start=angle, angle_end=float(angle_end), end_color=end_color, switch_frame=switch,
                     color_jitter=_jitter(rng))


def caption_rng(split: str, seed: int, index: int, video: bool, wording: str, k: int = 0) -> np.random.Generator:
    """The generator of caption ``k`` of an item; independent of the spec's draws."""
    return _rng(split, seed, index, _VIDEO if video else _IMAGE, stream=1 + 2 * k + (wording == "heldout"))


class DemoImageDataset(Dataset):
    """Rendered captioned images.

    Item: ``{"image": float [3, R, R] in [-1, 1], "caption": str, "labels": long [5] (shape, color,
    background, size, pattern class indices), "index": int}``.
    """

    def __init__(self, split: str = "train", length: int = 10_000, *, resolution: int = 64, seed: int = 0,
                 wording: str = "train", supersample: int = 4):
        _rng(split, seed, 0, _IMAGE)  # validates split
        self.split, self.length, self.resolution, self.seed = split, length, resolution, seed
        self.wording, self.supersample = wording, supersample

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ImageSpec:
        return sample_image_spec(self.split, self.seed, index)

    def caption(self, index: int, **changes: str) -> str:
        """The caption of item ``index``; with ``changes`` (e.g. ``shape="star"``) the caption of the same
        item with those attributes replaced, worded with the same draws, so it differs from the true
        caption only in the changed words (a counterfactual caption: a hard negative, or a candidate
        of a zero-shot reading)."""
        import dataclasses

        spec = dataclasses.replace(self.spec(index), **changes) if changes else self.spec(index)
        return caption_image(spec, caption_rng(self.split, self.seed, index, False, self.wording), self.wording)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        spec = self.spec(index)
        caption = self.caption(index)
        labels = spec.labels()
        return {"image": render_image(spec, self.resolution, self.supersample), "caption": caption,
                "labels": torch.tensor([labels[k] for k in ("shape", "color", "background", "size", "pattern")]),
                "index": index}


class DemoVideoDataset(Dataset):
    """Rendered captioned videos.

    Item: ``{"video": float [T, 3, R, R] in [-1, 1], "caption": str, "motion": str, "pattern": str,
    "needs_motion": bool, "needs_pattern": bool, "index": int}``. ``frames`` renders only those frame
    indices (the hybrid sampler needs 7 of 32), which is several times faster.
    """

    def __init__(self, split: str = "train", length: int = 10_000, *, num_frames: int = 32, resolution: int = 128,
                 seed: int = 0, wording: str = "train", supersample: int = 3):
        _rng(split, seed, 0, _VIDEO)
        self.split, self.length, self.num_frames, self.resolution = split, length, num_frames, resolution
        self.seed, self.wording, self.supersample = seed, wording, supersample

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> VideoSpec:
        return sample_video_spec(self.split, self.seed, index, self.num_frames)

    def caption(self, index: int, k: int = 0) -> str:
        """Caption ``k`` of item ``index`` (k > 0 gives further paraphrases of the same video)."""
        rng = caption_rng(self.split, self.seed, index, True, self.wording, k)
        return caption_video(self.spec(index), rng, self.wording)

    def get(self, index: int, frames: list[int] | None = None) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        spec = self.spec(index)
        return {"video": render_video(spec, self.resolution, frames, self.supersample), "caption": self.caption(index),
                "motion": spec.motion, "pattern": spec.pattern, "needs_motion": spec.motion in TEMPORAL_MOTIONS,
                "needs_pattern": spec.pattern != "plain", "index": index}

    def __getitem__(self, index: int) -> dict:
        return self.get(index)
