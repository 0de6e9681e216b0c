"""Average the weights of several generator snapshots (e.g. ``generator_ema`` copies of one run).

Float tensors are averaged in float64 and stored in the first snapshot's dtype; other tensors come
from the last snapshot. The config is the first snapshot's; all must share it.

    .venv/bin/python scripts/average_snapshots.py runs/avg-s8/step-2 runs/sg2-v7g2-ema/step-{67000..74000..1000}
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write (config.json + model.safetensors)")
    p.add_argument("snapshots", nargs="+", help="generator folders of one architecture")
    a = p.parse_args(argv)

    from safetensors.torch import load_file, save_file

    folders = [Path(s) for s in a.snapshots]
    configs = [json.loads((f / "config.json").read_text()) for f in folders]
    if any(c != configs[0] for c in configs[1:]):
        p.error("the snapshots do not share one config.json")
    states = [load_file(str(f / "model.safetensors")) for f in folders]
    if any(set(s) != set(states[0]) for s in states[1:]):
        p.error("the snapshots do not hold the same tensors")
    avg = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            avg[key] = (sum(s[key].double() for s in states) / len(states)).to(first.dtype)
        else:
            avg[key] = states[-1][key]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(avg, str(out / "model.safetensors"))
    shutil.copy(folders[0] / "config.json", out / "config.json")
    print(f"averaged {len(folders)} snapshots into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
