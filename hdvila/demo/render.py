"""Anti-aliased rendering of demo-domain specs (supersampled, then box-filtered).

Shapes are star-shaped polygons around their centre (a circle is exact), so inside-ness is a
comparison of a point's radius with the boundary radius along its direction. Everything is
vectorised over pixels with torch; only the object's bounding box is supersampled.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from hdvila.demo.attributes import BACKGROUNDS, COLORS, PATTERN_DELTA, PATTERN_PERIOD_PX, ImageSpec, VideoSpec

DOT_RADIUS_FRACTION = 0.3   # dot radius as a fraction of the lattice period


def _polygon(shape: str) -> list[tuple[float, float]] | None:
    """Vertices (angle in radians, radius) of a unit-circumradius shape; None for the circle.
    Image coordinates: x right, y down, so -pi/2 points up."""
    up = -math.pi / 2
    if shape == "circle":
        return None
    if shape == "square":
        return [(math.pi / 4 + k * math.pi / 2, 1.0) for k in range(4)]
    if shape == "triangle":
        return [(up + k * 2 * math.pi / 3, 1.0) for k in range(3)]
    if shape == "star":
        return [(up + k * math.pi / 5, 1.0 if k % 2 == 0 else 0.45) for k in range(10)]
    if shape == "diamond":  # a rhombus, 0.6 as wide as tall: unlike a square under any rotation
        return [(up, 1.0), (0.0, 0.6), (math.pi / 2, 1.0), (math.pi, 0.6)]
    if shape == "cross":
        w = 0.34
        pts = [(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1),
               (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1)]
        norm = math.hypot(1, w)
        return [(math.atan2(y, x), math.hypot(x, y) / norm) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


@lru_cache(maxsize=None)
def _polygon_tables(shape: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Sorted vertex angles in [-pi, pi) with wrap-around, and vertex points [K+1, 2]."""
    poly = _polygon(shape)
    if poly is None:
        return None
    poly = sorted(((math.remainder(a, 2 * math.pi), r) for a, r in poly))
    poly = poly + [(poly[0][0] + 2 * math.pi, poly[0][1])]
    angles = torch.tensor([a for a, _ in poly], dtype=torch.float64)
    pts = torch.tensor([[r * math.cos(a), r * math.sin(a)] for a, r in poly], dtype=torch.float64)
    return angles, pts


def boundary_radius(shape: str, phi: torch.Tensor) -> torch.Tensor:
    """Unit-circumradius boundary distance of ``shape`` along directions ``phi`` (radians, any shape)."""
    tables = _polygon_tables(shape)
    if tables is None:
        return torch.ones_like(phi)
    angles, pts = (t.to(phi.dtype) for t in tables)
    phi = torch.where(phi < angles[0], phi + 2 * math.pi, phi)
    k = (torch.searchsorted(angles, phi.contiguous(), right=True) - 1).clamp(0, len(angles) - 2)
    p0, p1 = pts[k], pts[k + 1]
    e = p1 - p0
    dx, dy = torch.cos(phi), torch.sin(phi)
    num = p0[..., 0] * e[..., 1] - p0[..., 1] * e[..., 0]
    den = dx * e[..., 1] - dy * e[..., 0]
    return num / den


def _pattern_signal(pattern: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Zero-mean modulation in [-1, 1] at object-frame pixel coordinates (u, v)."""
    if pattern == "plain":
        return torch.zeros_like(u)
    p = PATTERN_PERIOD_PX
    if pattern == "striped":
        return torch.where(torch.remainder(u, p) < p / 2, 1.0, -1.0).to(u.dtype)
    if pattern == "dotted":
        du = torch.remainder(u, p) - p / 2
        dv = torch.remainder(v, p) - p / 2
        frac = math.pi * DOT_RADIUS_FRACTION ** 2
        inside = du * du + dv * dv < (DOT_RADIUS_FRACTION * p) ** 2
        return torch.where(inside, 1.0, -frac / (1 - frac)).to(u.dtype)  # area-weighted mean is zero
    raise ValueError(f"unknown pattern {pattern!r}")


def _object_color(name: str, jitter: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor([c + j for c, j in zip(COLORS[name], jitter)], dtype=torch.float32)


def render_image(spec: ImageSpec, resolution: int = 64, supersample: int = 4) -> torch.Tensor:
    """Render ``spec`` -> float tensor [3, R, R] in [-1, 1] (RGB)."""
    r = resolution
    bg = torch.tensor(BACKGROUNDS[spec.background], dtype=torch.float32)
    out = bg.view(3, 1, 1).expand(3, r, r).clone()
    radius_px = spec.radius * r
    cx, cy = spec.cx * r, spec.cy * r
    x0, x1 = max(int(math.floor(cx - radius_px)) - 1, 0), min(int(math.ceil(cx + radius_px)) + 1, r)
    y0, y1 = max(int(math.floor(cy - radius_px)) - 1, 0), min(int(math.ceil(cy + radius_px)) + 1, r)
    if x1 <= x0 or y1 <= y0:
        return out / 127.5 - 1.0
    s = supersample
    xs = x0 + (torch.arange((x1 - x0) * s, dtype=torch.float32) + 0.5) / s
    ys = y0 + (torch.arange((y1 - y0) * s, dtype=torch.float32) + 0.5) / s
    gy, gx = torch.meshgrid(ys - cy, xs - cx, indexing="ij")
    theta = math.radians(spec.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * gx + sin * gy          # rotate into the object frame
    v = -sin * gx + cos * gy
    dist = torch.sqrt(u * u + v * v)
    inside = dist <= boundary_radius(spec.shape, torch.atan2(v, u)) * radius_px
    base = _object_color(spec.color, spec.color_jitter)
    signal = _pattern_signal(spec.pattern, u + 1000.0, v + 1000.0)  # offset: lattice not centred on the object
    obj = base.view(3, 1, 1) + PATTERN_DELTA * signal.unsqueeze(0)
    patch = torch.where(inside.unsqueeze(0), obj, bg.view(3, 1, 1))
    patch = torch.nn.functional.avg_pool2d(patch.unsqueeze(0), s)[0]
    out[:, y0:y1, x0:x1] = patch
    return out.clamp(0, 255) / 127.5 - 1.0


def render_video(spec: VideoSpec, resolution: int = 128, frames: list[int] | None = None,
                 supersample: int = 3) -> torch.Tensor:
    """Render ``spec`` -> float tensor [T, 3, R, R] in [-1, 1]; ``frames`` selects frame indices."""
    idx = range(spec.num_frames) if frames is None else frames
    return torch.stack([render_image(spec.frame(t), resolution, supersample) for t in idx])
