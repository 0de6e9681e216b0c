"""The judge's reading of a StyleGAN2 run's EMA snapshots by training progress, as JSON lines and a PNG.

For each snapshot folder ``step-N`` (a ``generator_ema`` copy, as ``runs/keep_ema.sh`` in
docs/results.md keeps them) of RUN_EMA_DIR, ``--samples`` images at truncation 1.0 (seeds 0..N-1,
constant noise) are read by the judge against as many training renders, with
:func:`hdvila.judge.evaluate.sample_report`. Written: one JSON object per snapshot (``step``,
``kimg`` = step x ``--batch`` / 1000, ``samples`` and the report) to ``--json``, and a plot of the share
confident on every attribute and per attribute, by kimg, to ``--out``. Rows already in ``--json`` for
the same step and ``--samples`` are kept, not recomputed, so a growing run is read incrementally.

    .venv/bin/python scripts/judge_curve.py runs/sg2-v7g2-ema --batch 16 --every 2000 --samples 500 \\
        --json runs/judge_curve.jsonl --out docs/images/stylegan2_judge_by_kimg.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from plot_fd import plot  # sibling script (scripts/ is on sys.path when run as a script)


def snapshots(ema_dir: Path, every: int) -> list[tuple[int, Path]]:
    """-> [(step, folder)] of ``ema_dir/step-N`` with N a multiple of ``every``, by step."""
    found = []
    for d in ema_dir.iterdir():
        m = re.fullmatch(r"step-(\d+)", d.name)
        if m and d.is_dir() and int(m.group(1)) % every == 0:
            found.append((int(m.group(1)), d))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ema_dir", help="folder of step-N generator snapshots")
    p.add_argument("--batch", type=int, required=True, help="global batch size of the run (for kimg)")
    p.add_argument("--every", type=int, default=1000, help="use steps that are multiples of this")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--json", required=True, help="JSON-lines file to write")
    p.add_argument("--out", required=True, help="PNG plot to write")
    a = p.parse_args(argv)

    import torch

    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.metrics import generator_samples, real_images
    from hdvila.judge import ATTRIBUTE_NAMES, load_judge
    from hdvila.judge.evaluate import sample_report

    snaps = snapshots(Path(a.ema_dir), a.every)
    if not snaps:
        print(f"error: no step-N folders (N a multiple of {a.every}) in {a.ema_dir}", file=sys.stderr)
        return 2
    kept = {}
    if Path(a.json).is_file():
        for line in Path(a.json).read_text().splitlines():
            r = json.loads(line)
            if r.get("samples") == a.samples:
                kept[r["step"]] = r
    judge = load_judge()
    real = None
    rows = []
    for step, folder in snaps:
        if step in kept:
            rows.append(kept[step])
            continue
        G = load_stylegan2(folder).eval()
        if real is None:
            real = real_images(a.samples, G.img_resolution)
        with torch.no_grad():
            fake = generator_samples(G, range(a.samples))
        row = {"step": step, "kimg": step * a.batch / 1000, "samples": a.samples, **sample_report(judge, fake, real)}
        rows.append(row)
        print(f"step {step} ({row['kimg']:g} kimg): all attributes confident {100 * row['confident_all_attributes']:.1f}%, "
              + ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["confident_per_attribute"].items()), flush=True)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text("".join(json.dumps(r) + "\n" for r in rows))
    series = [("every attribute", [(r["kimg"], r["confident_all_attributes"]) for r in rows])]
    series += [(k, [(r["kimg"], r["confident_per_attribute"][k]) for r in rows]) for k in ATTRIBUTE_NAMES]
    plot(series, Path(a.out), floor=0.9, floor_label="target 0.9",
         title=f"Share of {a.samples} samples the judge reads with confidence > 0.9 (higher is better)")
    print(f"wrote {a.json} and {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
