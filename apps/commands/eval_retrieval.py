"""``hdvila eval-retrieval``: text-video retrieval metrics of a model on an annotated set of videos
(:func:`hdvila.retrieval.evaluate.evaluate_retrieval`).

Usage::

    hdvila eval-retrieval --model DIR --annotations FILE --videos DIR --format msrvtt|didemo|lsmdc|activitynet|jsonl
        [--paragraph | --no-paragraph] [--split SPLIT] [--split-list FILE]
        [--num-frames N --sample-rate R --n-clips C] [--batch-size B] [--device auto|cpu|cuda]
        [--dtype auto|fp32|fp16|bf16] [--workers W] [--cache-dir DIR | --no-cache] [--skip-bad]
        [--max-tokens L] [--ties pessimistic|optimistic] [--json OUT]

The summary table goes to stdout; with ``--json -`` stdout holds the JSON alone (the table goes to
stderr), so the output can be piped into a JSON parser.
"""

from __future__ import annotations

import argparse
import sys

from apps.commands._retrieval import add_model_arguments, load_from_args, write_json

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hdvila.retrieval.annotations import FORMATS
    from hdvila.retrieval.metrics import TIE_RULES

    parser.add_argument("--annotations", required=True, help="annotation file")
    parser.add_argument("--videos", required=True, help="folder with the videos (files or frame folders)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation format")
    parser.add_argument("--paragraph", action=argparse.BooleanOptionalAction, default=None,
                        help="join each video's sentences into one query (default: on for didemo, activitynet)")
    parser.add_argument("--split", default=None, help="MSR-VTT JSON only: evaluate the videos of this split")
    parser.add_argument("--split-list", default=None, metavar="FILE",
                        help="evaluate only the videos listed in FILE (one video id per line), e.g. DiDeMo's "
                             "1,004-video test list for its test_data.json")
    add_model_arguments(parser)
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out missing or unreadable videos and bad annotation rows (listed in the output)")
    parser.add_argument("--ties", choices=TIE_RULES, default="pessimistic",
                        help="tie rule for ranks (default pessimistic: tied wrong items rank ahead)")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the results as JSON ('-': stdout, which then holds the JSON alone)")


def run(args: argparse.Namespace) -> int:
    from hdvila.retrieval.annotations import DATASET_SAMPLING, load_annotations, restrict_to_id_list
    from hdvila.retrieval.evaluate import evaluate_retrieval, report

    ann = load_annotations(args.annotations, args.format, paragraph=args.paragraph, split=args.split,
                           skip_bad_rows=args.skip_bad)
    if args.split_list:
        ann = restrict_to_id_list(ann, args.split_list, skip_bad_rows=args.skip_bad)
    model, processor, model_id, device, dtype, cache_root = load_from_args(args, DATASET_SAMPLING.get(args.format))
    result = evaluate_retrieval(model, processor, ann, args.videos, batch_size=args.batch_size, device=device,
                                dtype=dtype, workers=args.workers, cache_dir=cache_root, model_id=model_id,
                                skip_bad=args.skip_bad, ties=args.ties, progress=not args.quiet)
    print(report(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        write_json(args.json, result)
    return 0
