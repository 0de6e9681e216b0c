"""``hdvila score-mapper MAPPER... [--encoder DIR] [--val-size 16] [--figures DIR] [--json OUT]``: the
validation numbers of trained edit mappers, without training
(:func:`generation.mapper_eval.score_mappers`).

Each mapper folder (``OUTPUT_DIR/mapper``, ``OUTPUT_DIR/checkpoint-N/ema``) edits every held-out image
once per editable attribute, and the guide reads the edits (no judge): ``val/read_<a>`` (read as the
asked value), ``val/kept_<a>`` (every other attribute read as on the source), ``val/read``,
``val/kept``, ``val/select`` = (read + kept) / 2 and ``val/offset`` (the mean offset norm in w-spread
units): the numbers ``generation/train_mapper.py`` logs at each validation, and the guide-alone
selection of a checkpoint, fixed before any judging. Give the options the training run had
(``--generator``, ``--hdvila``, ``--encoder``, ``--attributes``, ``--data``, ``--val-size``,
``--unread-attributes``, ``--seed``) to score on the same held-out images and get the same numbers.
"""

from __future__ import annotations

import argparse
import sys

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json", "figures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("mappers", nargs="+", metavar="MAPPER",
                        help="EditMapper folders (e.g. OUTPUT_DIR/mapper, OUTPUT_DIR/checkpoint-N/ema)")
    parser.add_argument("--generator", default=None, help="StyleGAN2 generator (default: the bundled stylegan2-demo64)")
    parser.add_argument("--hdvila", default=None, help="HD-VILA model folder, the guide (default: the bundled "
                        "hdvila-mini)")
    parser.add_argument("--encoder", default=None, help="latent encoder folder that inverts the held-out images "
                        "(default: the bundled edit-demo64's)")
    parser.add_argument("--attributes", default=None, help="JSON vocabulary (generation/editing/attributes.py) "
                        "(default: the demo domain's)")
    parser.add_argument("--data", default="demo", help="'demo' (test-split renders) or the training run's folder of "
                        "images, whose last --val-size files are held out (default demo)")
    parser.add_argument("--val-size", type=int, default=16, help="held-out images (default 16)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="a folder: leave out unusable files with a warning")
    parser.add_argument("--unread-attributes", nargs="*", default=[], metavar="ATTRIBUTE",
                        help="attributes the guide does not read reliably: neither their asked value nor their "
                             "keeping is scored")
    parser.add_argument("--seed", type=int, default=0, help="the demo renders' and the asked values' seed (default 0)")
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="also write each mapper's grid (source | one edit per attribute) here")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the numbers as JSON, by mapper folder ('-': stdout alone)")


def run(args: argparse.Namespace) -> int:
    from generation.mapper_eval import score_mappers

    if args.val_size < 1:
        raise UserError(f"--val-size must be >= 1, got {args.val_size}")
    out = sys.stderr if args.json == "-" else sys.stdout

    def report(folder: str, numbers: dict[str, float]) -> None:
        print(folder, " ".join(f"{k}={v:.4f}" for k, v in numbers.items()), file=out, flush=True)

    scores = score_mappers(args.mappers, generator=args.generator, encoder=args.encoder, hdvila=args.hdvila,
                           attributes=args.attributes, data=args.data, val_size=args.val_size,
                           skip_bad_images=args.skip_bad_images, unread_attributes=args.unread_attributes,
                           seed=args.seed, figures_dir=args.figures, val_option="--val-size", report=report,
                           skip_hint="pass --skip-bad-images to score without them")
    if args.json:
        from apps.commands._retrieval import write_json

        write_json(args.json, scores)
    return 0
