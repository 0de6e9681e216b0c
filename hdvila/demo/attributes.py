"""Attribute vocabularies of the demo domain and the item specifications.

Colours keep every channel in [45, 210] so that a pattern can modulate them by +-45 around the base
colour: stripes and dots then average to the plain colour, and a pattern cannot be recovered from a
4x-downsampled image (only from the full-resolution one), which is what the hybrid HR/LR claim and
text-conditioned super-resolution need.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (205, 50, 50),
    "orange": (210, 135, 45),
    "yellow": (205, 200, 50),
    "green": (55, 165, 65),
    "cyan": (50, 190, 200),
    "blue": (55, 80, 210),
    "purple": (135, 60, 195),
    "pink": (210, 110, 175),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (120, 120, 120),
    "navy": (20, 25, 75),
}
SIZES = ("small", "large")
PATTERNS = ("plain", "striped", "dotted")
MOTIONS = ("still", "left", "right", "up", "down", "grow", "shrink", "rotate", "recolor")
# Motions only visible over time (a single middle frame cannot tell them apart from "still").
TEMPORAL_MOTIONS = ("left", "right", "up", "down", "grow", "shrink", "rotate", "recolor")

# Relative sizes: circumradius as a fraction of the image side.
SIZE_RADIUS = {"small": 0.15, "large": 0.27}
GROW_RANGE = (0.13, 0.30)
PATTERN_DELTA = 45.0          # +- modulation of each channel by a pattern
PATTERN_PERIOD_PX = 4.0       # stripe / dot lattice period in output pixels (invisible at 1/4 scale)
POSITION_CELLS = (0.34, 0.5, 0.66)
VERTICAL_WORDS = ("top", "middle", "bottom")
HORIZONTAL_WORDS = ("left", "center", "right")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "background": tuple(BACKGROUNDS),
    "size": SIZES,
    "pattern": PATTERNS,
}


@dataclass(frozen=True)
class ImageSpec:
    """One rendered object. Geometry in fractions of the image side; angle in degrees."""

    shape: str
    color: str
    background: str
    size: str
    pattern: str
    cx: float
    cy: float
    row: int              # position cell, 0..2 top to bottom
    col: int              # position cell, 0..2 left to right
    radius: float
    angle: float
    color_jitter: tuple[int, int, int] = (0, 0, 0)

    def labels(self) -> dict[str, int]:
        """Class index per judged attribute."""
        return {name: values.index(getattr(self, name)) for name, values in ATTRIBUTES.items()}


@dataclass(frozen=True)
class VideoSpec:
    """An object over ``num_frames`` frames. ``size`` is None for grow/shrink; ``end_color`` and
    ``switch_frame`` are set for recolor."""

    shape: str
    color: str
    background: str
    size: str | None
    pattern: str
    motion: str
    num_frames: int
    start: tuple[float, float]
    end: tuple[float, float]
    radius_start: float
    radius_end: float
    angle_start: float
    angle_end: float
    end_color: str | None = None
    switch_frame: int | None = None
    color_jitter: tuple[int, int, int] = (0, 0, 0)
    extra: dict = field(default_factory=dict, compare=False)

    def frame(self, t: int) -> ImageSpec:
        """The still-image spec of frame ``t`` (0-based)."""
        a = t / max(self.num_frames - 1, 1)
        cx = self.start[0] + a * (self.end[0] - self.start[0])
        cy = self.start[1] + a * (self.end[1] - self.start[1])
        color = self.color
        if self.end_color is not None and self.switch_frame is not None and t >= self.switch_frame:
            color = self.end_color
        radius = self.radius_start + a * (self.radius_end - self.radius_start)
        size = self.size or ("small" if radius < sum(SIZE_RADIUS.values()) / 2 else "large")
        return ImageSpec(shape=self.shape, color=color, background=self.background, size=size,
                         pattern=self.pattern, cx=cx, cy=cy, row=1, col=1, radius=radius,
                         angle=self.angle_start + a * (self.angle_end - self.angle_start),
                         color_jitter=self.color_jitter)
