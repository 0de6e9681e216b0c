"""``hdvila judge IMAGES...``: per-image attributes with confidences.

Accepts image files and folders (their images, non-recursive). A file that cannot be read, or that is
not a roughly square frame of at least 16 px (the judge reads demo-domain renders), is reported on
stderr with the reason and skipped; the exit status is 1 if any file failed.
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


#: The smallest side and the largest aspect ratio the judge reads: it was trained on square renders and
#: resizes every image to its input size, so a sliver or a few pixels would be read as confidently as a frame.
MIN_SIDE, MAX_ASPECT = 16, 1.25


def check_judgeable(path, width: int, height: int, resolution: int) -> None:
    """An :class:`~hdvila.errors.InputFileError` for an image the judge cannot read meaningfully: a side
    under :data:`MIN_SIDE` px or an aspect ratio over :data:`MAX_ASPECT`."""
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise InputFileError(f"{path}: {width}x{height} px; the judge reads square demo-domain frames of at least "
                             f"{MIN_SIDE} px (it resizes them to {resolution}x{resolution}). Crop it to a square "
                             "first.")


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
                image = pil_to_tensor(load_image(f))
                check_judgeable(f, image.shape[-1], image.shape[-2], judge.config.resolution)
                batch.append(image)
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
