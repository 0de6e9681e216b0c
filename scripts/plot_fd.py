"""Plot FD-HDVILA against training progress (kimg) for one or more StyleGAN2 runs, as a PNG.

Reads each run's ``metrics.jsonl`` (written by ``train_stylegan2.py --fd_steps N``: one JSON object
per line with ``kimg`` and ``fd_hdvila``) and draws one line per run, with an optional dashed
horizontal line for the real-vs-real floor. Drawn with Pillow only (no plotting library needed).

    python scripts/plot_fd.py runs/sg2-v5:"gamma 10" runs/sg2-v7g2:"gamma 2" --floor 0.0076 \
        --out docs/images/stylegan2_fd_by_kimg.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


def read_series(run_dir: Path) -> list[tuple[float, float]]:
    """-> [(kimg, fd)] sorted by kimg; later lines win for a repeated kimg (a resumed run)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train with --fd_steps N to log FD-HDVILA")
    points: dict[float, float] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            points[float(row["kimg"])] = float(row["fd_hdvila"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: not a metrics line ({e})") from None
    return sorted(points.items())


def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    return [round(first + i * step, 10) for i in range(int(math.ceil((hi - first) / step)) + 1)]


def plot(series: list[tuple[str, list[tuple[float, float]]]], out: Path, floor: float | None = None,
         floor_label: str | None = None, title: str = "FD-HDVILA by training progress (lower is better)", size: tuple[int, int] = (900, 540)) -> None:
    width, height = size
    left, right, top, bottom = 80, 30, 50, 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + ([floor] if floor is not None else [])
    if not xs:
        raise ValueError("no points to plot")
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(0.0, max(ys))
    x0, x1, y1 = xt[0], xt[-1], yt[-1]
    x1 = x1 if x1 > x0 else x0 + 1

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - y / y1 * (height - top - bottom))

    for t in yt:
        _, py = to_px(x0, t)
        draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
        draw.text((left - 8, py), f"{t:g}", fill="black", font=font, anchor="rm")
    for t in xt:
        px, _ = to_px(t, 0)
        draw.line([(px, top), (px, height - bottom)], fill=(230, 230, 230))
        draw.text((px, height - bottom + 8), f"{t:g}", fill="black", font=font, anchor="mt")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((width / 2, height - 20), "kimg (thousands of images shown to D)", fill="black", font=font, anchor="mm")
    draw.text((width / 2, 20), title, fill="black", font=font, anchor="mm")
    if floor is not None:
        _, py = to_px(x0, floor)
        for sx in range(left, width - right, 12):
            draw.line([(sx, py), (min(sx + 6, width - right), py)], fill=(90, 90, 90))
        draw.text((left + 4, py - 4), floor_label or f"real vs real floor {floor:g}", fill=(90, 90, 90), font=font,
                  anchor="lb")
    legend_x = width - right - 45 - max(draw.textlength(label, font=font) for label, _ in series)
    for i, (label, pts) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        coords = [to_px(x, y) for x, y in pts]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=3)
        for cx, cy in coords:
            draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        ly = top + 14 + 16 * i
        draw.line([(legend_x, ly), (legend_x + 25, ly)], fill=colour, width=3)
        draw.text((legend_x + 32, ly), label, fill="black", font=font, anchor="lm")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR:LABEL (a folder with metrics.jsonl)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--floor", type=float, default=None, help="real-vs-real FD-HDVILA, drawn as a dashed line")
    args = p.parse_args(argv)
    try:
        series = []
        for spec in args.runs:
            run, _, label = spec.partition(":")
            series.append((label or Path(run).name, read_series(Path(run))))
        plot(series, Path(args.out), floor=args.floor)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
