"""``hdvila judge IMAGES...``: per-image attributes with confidences.

Accepts image files and folders (their images, non-recursive). A file that cannot be read is
reported on stderr with the reason and skipped; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hdvila.errors import InputFileError, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--model", default=None, help="judge model folder (default: bundled checkpoints/judge)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of a table")
    parser.add_argument("--batch-size", type=int, default=64, help="images read from disk at a time (default 64)")


def _collect(inputs: list[str]) -> list[Path]:
    from hdvila.imageio import list_images

    files: list[Path] = []
    for name in inputs:
        p = Path(name)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise UserError(f"{p}: no images found (looked for .png, .jpg, .jpeg, .bmp, .webp, .tif, .gif).")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder.")
    return files


def run(args: argparse.Namespace) -> int:
    from hdvila.imageio import load_image
    from hdvila.judge.evaluate import read_attributes
    from hdvila.judge.model import ATTRIBUTE_NAMES, load_judge
    from hdvila.tensors import pil_to_tensor

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    files = _collect(args.inputs)
    judge = load_judge(args.model)
    failed = 0
    if not args.json:
        print("\t".join(["file"] + list(ATTRIBUTE_NAMES)))
    for start in range(0, len(files), args.batch_size):
        batch, names = [], []
        for f in files[start: start + args.batch_size]:
            try:
                batch.append(pil_to_tensor(load_image(f)))
                names.append(f)
            except InputFileError as e:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
        for f, image in zip(names, batch):
            row = read_attributes(judge, image)
            if args.json:
                print(json.dumps({"file": str(f)} | {k: {"value": v, "confidence": round(c, 4)}
                                                     for k, (v, c) in row.items()}))
            else:
                print("\t".join([str(f)] + [f"{v} ({c:.2f})" for v, c in row.values()]))
    return 1 if failed else 0
