"""``hdvila search VIDEO_DIR "a red star moving left"``: text-to-video search over a folder of videos
(:func:`hdvila.retrieval.search.search_videos`).

Usage::

    hdvila search VIDEO_DIR "a red star moving left" [--top 5] [--model DIR] [--cache-dir DIR | --no-cache]
        [--num-frames N --sample-rate R --n-clips C] [--batch-size B] [--device D] [--dtype T] [--workers W]
        [--json OUT]

Prints the ``--top`` best videos (rank, score, file); videos that cannot be decoded are listed as
warnings on stderr. The default model is the bundled ``checkpoints/hdvila-mini``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apps.commands._retrieval import add_model_arguments, load_from_args, write_json
from hdvila.errors import TextInputError, UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video_dir", help="folder of videos to search (searched recursively)")
    parser.add_argument("query", help="what to look for, e.g. \"a red star moving left\"")
    parser.add_argument("--top", type=int, default=5, help="number of results (default 5)")
    add_model_arguments(parser)
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write the results as JSON ('-': stdout, which then holds the JSON alone)")


def check_query_length(query: str, processor) -> None:
    """Refuse a query longer than the text encoder reads (``processor.max_length`` tokens, the limit
    ``hdvila edit`` holds prompts to, :func:`generation.editing.guide.check_prompt`): cut, it would
    search for half a sentence."""
    n = processor.token_counts([query.strip()])[0]
    if n > processor.max_length:
        raise TextInputError(f"the search query has {n} tokens ({len(query):,} characters); the text encoder reads "
                             f"at most {processor.max_length} ([CLS] and [SEP] included, see --max-tokens). "
                             f"Shorten it to the words that describe the video.")


def run(args: argparse.Namespace) -> int:
    from hdvila.retrieval.index import list_videos
    from hdvila.retrieval.search import search_videos

    if not args.query.strip():
        raise TextInputError("The search query is empty; describe the video you are looking for.")
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    if not Path(args.video_dir).is_dir():
        list_videos(args.video_dir)  # raises the 'not found' / 'is a file' error
    model, processor, model_id, device, dtype, cache_root = load_from_args(args)
    check_query_length(args.query, processor)
    out = search_videos(model, processor, args.video_dir, args.query, top=args.top, cache_dir=cache_root,
                        model_id=model_id, batch_size=args.batch_size, device=device, dtype=dtype,
                        workers=args.workers, progress=not args.quiet)
    for s in out["skipped"]:
        print(f"warning: skipped {s['reason']}", file=sys.stderr)
    table = sys.stderr if args.json == "-" else sys.stdout
    print(f"searched {out['num_videos']} videos ({out['videos_encoded']} newly indexed, "
          f"{out['videos_from_cache']} from cache) for: {args.query}", file=table)
    print(f"{'rank':>4}  {'score':>7}  file", file=table)
    for r in out["results"]:
        print(f"{r['rank']:>4}  {r['score']:>7.4f}  {r['file']}", file=table)
    if args.json:
        write_json(args.json, out)
    return 0
