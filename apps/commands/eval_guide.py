"""``hdvila eval-guide [--model DIR] [--num N] [--resolution 64] [--wording train|heldout]``: what an
HD-VILA model reads off still renders zero-shot, attribute by attribute
(:func:`generation.presets.demo_guide_eval.evaluate_guide_reading`).

For each of N held-out test-split renders at the generator's resolution and each attribute (shape,
colour, pattern, size, background), candidate texts name every value of the attribute; the reading
is the candidate with the highest cosine to the still's embedding. Candidates: ``full``, the true
caption with only that attribute changed (training or held-out wording), and ``short``, the value
alone ("a star", "a red one", "a striped one", "a large one", "on a black background"). Stills are
embedded through the public processor path (preprocess_images -> get_image_features) and through the
editing guide's path (HDVILAGuide.image_features on [-1, 1] tensors); both are reported, with chance
(1 / number of values). This is how well the guide behind text-guided editing can tell the values apart.
"""

from __future__ import annotations

import argparse
import sys

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--model", default=None,
                        help="HD-VILA model folder (default: the bundled checkpoints/hdvila-mini)")
    parser.add_argument("--num", type=int, default=200, help="test-split renders (default 200)")
    parser.add_argument("--resolution", type=int, default=64,
                        help="render side in px, the generator's: 8 to 1024 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="the demo domain's seed (default 0)")
    parser.add_argument("--wording", choices=["train", "heldout"], default="train",
                        help="caption and prompt wordings (heldout: words and phrasings never seen in training)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write everything as JSON ('-': stdout alone)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


#: Render sides accepted by --resolution, and the most pixels all --num renders may hold together (in
#: memory at once, as float32: 2**27 pixels x 3 channels x 4 bytes = 1.5 GiB).
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
MAX_TOTAL_PIXELS = 2**27


def run(args: argparse.Namespace) -> int:
    from generation.presets.demo_guide_eval import evaluate_guide_reading, format_table
    from hdvila.device import get_device
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    if args.num < 1 or args.batch_size < 1:
        raise UserError("--num and --batch-size must be >= 1")
    if not MIN_RESOLUTION <= args.resolution <= MAX_RESOLUTION:
        raise UserError(f"--resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} px (the generator's "
                        f"side, default 64), got {args.resolution}")
    if args.num * args.resolution ** 2 > MAX_TOTAL_PIXELS:
        raise UserError(f"--num {args.num} renders at {args.resolution} px are {args.num * args.resolution ** 2:,} "
                        f"pixels in memory at once, above the limit of {MAX_TOTAL_PIXELS:,}; lower --num or "
                        f"--resolution")
    model_dir = resolve_model_path(args.model, "hdvila-mini", option="--model", accepts=(
        "an HD-VILA model folder (config.json + model.safetensors, e.g. from `hdvila convert hdvila`)"))
    model = HDVILAModel.from_pretrained(model_dir).eval().to(get_device(args.device))
    processor = HDVILAProcessor.from_config(model.config)
    result = evaluate_guide_reading(model, processor, num=args.num, resolution=args.resolution, seed=args.seed,
                                    wording=args.wording, batch_size=args.batch_size, progress=not args.quiet)
    result = {"model": str(model_dir), **result}
    out = sys.stderr if args.json == "-" else sys.stdout
    print(format_table(result), file=out)
    if args.json:
        from apps.commands._retrieval import write_json

        write_json(args.json, result)
    return 0
