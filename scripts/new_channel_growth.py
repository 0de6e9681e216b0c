"""How far a widened StyleGAN2 run has recruited its new channels, checkpoint by checkpoint.

For a run started with ``--init_from`` a narrower checkpoint (generation/stylegan2/widen.py), prints the
rms of the new input columns (what the new channels feed forward; zero at the start) of a few G and
D layers at each ``checkpoint-N`` of the run, beside the rms of the old block of the narrow checkpoint.

    .venv/bin/python scripts/new_channel_growth.py runs/sg2-v7g2/checkpoint-83000 runs/sg2-w4k
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

LAYERS = [("model.safetensors", "generator.synthesis.b64.conv1.weight", "G b64.conv1"),
          ("model.safetensors", "generator.synthesis.b32.conv1.weight", "G b32.conv1"),
          ("model.safetensors", "generator.synthesis.b64.torgb.weight", "G b64.torgb"),
          ("model_1.safetensors", "b64.conv0.weight", "D b64.conv0"),
          ("model_1.safetensors", "b32.conv0.weight", "D b32.conv0")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("narrow", help="the narrower checkpoint the run was widened from")
    p.add_argument("run", help="the widened run's output folder (checkpoint-N inside)")
    a = p.parse_args(argv)
    from safetensors.torch import load_file

    from generation.train_stylegan2 import list_checkpoints

    old = {f: load_file(str(Path(a.narrow) / f)) for f in {f for f, _, _ in LAYERS}}
    print("step  " + "  ".join(f"{name} new (old)" for _, _, name in LAYERS))
    for step, d in list_checkpoints(Path(a.run)):
        new = {f: load_file(str(d / f)) for f in old}
        cells = []
        for f, key, _ in LAYERS:
            co, ci = old[f][key].shape[:2]
            w = new[f][key]
            cells.append(f"{w[:co, ci:].pow(2).mean().sqrt():.3f} ({old[f][key].pow(2).mean().sqrt():.2f})")
        print(f"{step}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
