#!/usr/bin/env python
"""Export a ``generation/train_stylegan2.py`` checkpoint as a bundled generator folder.

    .venv/bin/python scripts/export_stylegan2.py runs/sg2/checkpoint-88000 checkpoints/stylegan2-demo64
    .venv/bin/python scripts/export_stylegan2.py runs/sg2-d/step-88000 OUT --generator runs/sg2-ema/step-88000

OUT gets the EMA generator (``config.json`` + ``model.safetensors``, loadable with
``Generator.from_pretrained``) and the checkpoint's discriminator in ``OUT/discriminator/``, both
stored as float16 (``hdvila.modeling_utils.export_lean``; they load as float32). The discriminator
is what lets training go on from the bundled folder (``train_stylegan2.py --init_from OUT``) and
gives GAN losses a trained critic. CHECKPOINT needs ``training_state.json`` (the model settings)
and ``model_1.safetensors`` (D); the generator comes from ``CHECKPOINT/generator_ema`` unless
``--generator`` names another model folder. OUT is replaced only once the new folder is complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def export(checkpoint: Path, out: Path, generator: Path | None = None) -> Path:
    """Write the bundled layout (EMA G at ``out``, D at ``out/discriminator``) from a checkpoint."""
    from generation.stylegan2 import Discriminator, Generator
    from generation.train_stylegan2 import EMA_FOLDER, STATE_FILE, network_configs
    from hdvila.errors import UserError
    from hdvila.modeling_utils import export_lean, load_weights

    generator = generator or checkpoint / EMA_FOLDER
    for f in (checkpoint / STATE_FILE, checkpoint / "model_1.safetensors"):
        if not f.is_file():
            raise UserError(f"{f} is missing: {checkpoint} is not a checkpoint of train_stylegan2.py.")
    g_cfg, d_cfg = network_configs(json.loads((checkpoint / STATE_FILE).read_text())["model"])
    if Generator.read_config(generator) != g_cfg:
        raise UserError(f"{generator} is not the generator of {checkpoint}: their settings differ.")
    D = Discriminator(d_cfg)
    load_weights(D, checkpoint / "model_1.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}.", dir=out.parent))
    try:
        D.save_pretrained(work / "d-fp32")
        export_lean(generator, work / "new")
        export_lean(work / "d-fp32", work / "new" / "discriminator")
        Generator.from_pretrained(work / "new")  # both load before anything is replaced
        Discriminator.from_pretrained(work / "new" / "discriminator")
        if out.exists():
            out.rename(work / "old")
        (work / "new").rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (training_state.json, model_1.safetensors)")
    p.add_argument("out", type=Path, help="bundled folder to write (replaced if it exists)")
    p.add_argument("--generator", type=Path, default=None,
                   help="EMA generator model folder (default: CHECKPOINT/generator_ema)")
    args = p.parse_args(argv)
    from hdvila.errors import UserError

    try:
        print(export(args.checkpoint, args.out, args.generator))
    except UserError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
