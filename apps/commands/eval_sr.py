"""``hdvila eval-sr [--model DIR] [--data demo|CAPTIONS]``: measure a super-resolution pipeline
(:func:`generation.superres.evaluate.evaluate_sr`).

Reports, for bicubic upsampling, SR without text, SR with the true caption and (demo domain) SR with
a caption naming another pattern: PSNR and SSIM on RGB and on Y (BT.601) after rounding to 8 bits,
with a border of ``--crop-border`` pixels (default: the scale) left out; LPIPS when its weights are on
disk; the judge's attribute accuracy (demo domain); the HD-VILA text-image score. ``--data demo``
renders ``--num`` held-out test-split images; a captions file (jsonl or csv) is read like training data.
"""

from __future__ import annotations

import argparse
import sys

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json", "figure")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--model", default=None,
                        help="SR pipeline folder (default: the bundled checkpoints/sr-demo64-x4)")
    parser.add_argument("--data", default="demo", help="'demo' or a captions file (.jsonl or .csv)")
    parser.add_argument("--num", type=int, default=500, help="demo: test-split renders (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="demo: the domain's seed (default 0)")
    parser.add_argument("--wording", choices=["train", "heldout"], default="train",
                        help="demo: caption wordings (heldout: phrasings never seen in training)")
    parser.add_argument("--crop-border", type=int, default=None,
                        help="pixels left out at each border (default: the scale)")
    parser.add_argument("--judge", default=None, help="attribute judge folder (default: the bundled judge; demo only)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the metrics as JSON ('-': stdout alone)")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="write LR | bicubic | SR no text | SR text | SR wrong caption | HR for 8 images")
    parser.add_argument("--device", default=None)


#: SSIM's Gaussian window (generation/superres/metrics.py): what must be left after cropping.
SSIM_WINDOW = 11


def check_crop_border(crop_border: int | None, resolution: int) -> None:
    """A one-line :class:`UserError` for a ``--crop-border`` that is negative or leaves fewer than
    SSIM's 11x11 pixels of a ``resolution``-px output (None: the scale, always fine)."""
    if crop_border is None:
        return
    most = (resolution - SSIM_WINDOW) // 2
    if not 0 <= crop_border <= most:
        raise UserError(f"--crop-border must be between 0 and {most} pixels for this model's {resolution}x{resolution} "
                        f"outputs (SSIM needs {SSIM_WINDOW}x{SSIM_WINDOW} left), got {crop_border}")


def run(args: argparse.Namespace) -> int:
    from apps.pipelines import load_sr_pipeline
    from generation.superres.data import demo_captioned_images, folder_captioned_images
    from generation.superres.evaluate import comparison_figure, evaluate_sr, format_table, wrong_pattern_captions

    if args.num < 1 or args.batch_size < 1:
        raise UserError("--num and --batch-size must be >= 1")
    if args.crop_border is not None and args.crop_border < 0:
        raise UserError(f"--crop-border must be >= 0 pixels, got {args.crop_border}")
    pipe = load_sr_pipeline(args.model, device=args.device)
    res = pipe.out_resolution
    check_crop_border(args.crop_border, res)
    judge = wrong = targets = None
    if args.data == "demo":
        from hdvila.judge.model import load_judge

        data = demo_captioned_images(args.num, res, split="test", seed=args.seed, wording=args.wording)
        wrong, targets = wrong_pattern_captions(args.num, split="test", seed=args.seed, wording=args.wording)
        judge = load_judge(args.judge)
    else:
        data = folder_captioned_images(args.data, res)
    result = evaluate_sr(pipe, data, judge=judge, wrong_captions=wrong, wrong_targets=targets,
                         crop_border=args.crop_border, batch_size=args.batch_size, keep_outputs=8 if args.figure else 0)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"{result['n']} images, x{result['scale']}, LR by {result['kernel']} downsampling, border "
          f"{result['crop_border']} px left out, LPIPS {result['lpips']}", file=out)
    print(format_table(result), file=out)
    if args.figure:
        print(f"wrote {comparison_figure(result, args.figure)}", file=out)
    result.pop("outputs", None)
    if args.json:
        from apps.commands._retrieval import write_json

        write_json(args.json, result)
    return 0
