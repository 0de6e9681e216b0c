"""``hdvila export CHECKPOINT OUT [--average N]``: a StyleGAN2 training checkpoint -> bundled folder.

    hdvila export runs/sg2/checkpoint-88000 checkpoints/stylegan2-demo64
    hdvila export runs/sg2 OUT --average 4          # the newest checkpoint, EMA G averaged over the last 4

OUT gets the EMA generator (``Generator.from_pretrained(OUT)``) and the checkpoint's discriminator
in ``OUT/discriminator/``, both float16: :func:`generation.stylegan2.export.export_checkpoint`.
Nothing is written when the export fails.
"""

from __future__ import annotations

import argparse

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint-N folder of generation/train_stylegan2.py, or the run's "
                                           "output folder (its newest checkpoint)")
    parser.add_argument("out", help="folder to write (an earlier export there is replaced)")
    parser.add_argument("--average", type=int, default=1, metavar="N",
                        help="export the mean of the EMA generators of the run's last N checkpoints, ending with "
                             "CHECKPOINT (default 1: its own EMA generator)")
    parser.add_argument("--generator", default=None, metavar="DIR",
                        help="take the generator from this model folder instead of CHECKPOINT/generator_ema "
                             "(e.g. an EMA snapshot kept elsewhere); it must have the checkpoint's settings")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from generation.stylegan2.export import export_checkpoint
    from hdvila.errors import UserError

    if Path(args.checkpoint).is_file():
        raise UserError(f"{args.checkpoint} is a file, not a folder: export takes a checkpoint-N folder of "
                        f"generation/train_stylegan2.py or the run's output folder (an NVlabs .pkl or rosinality .pt "
                        f"is made a model folder by `hdvila convert stylegan2 SRC OUT`).")
    result = export_checkpoint(args.checkpoint, args.out, average=args.average, generator=args.generator)
    names = ", ".join(g.parent.name for g in result.generators)
    source = (f"the mean of {len(result.generators)} EMA generators ({names})" if len(result.generators) > 1
              else str(result.generators[0]))
    print(f"{result.out}: generator from {source}, discriminator from {result.checkpoint} (step {result.step})")
    return 0
