"""``hdvila app``: the Gradio web UI (:mod:`apps.web`) on the bundled defaults.

Usage::

    hdvila app [--host 127.0.0.1] [--port 7860] [--share] [--edit-model DIR] [--generator PKL|DIR]
        [--sr-model DIR] [--hdvila DIR] [--videos DIR]
        [--cache-dir DIR] [--device D] [--concurrency N]

Serves on http://127.0.0.1:7860 by default (local only); ``--share`` opens a public Gradio link.
Models load in the background after the server is up, each once.
"""

from __future__ import annotations

import argparse

# The same values as apps.web's (kept here so `hdvila app --help` does not import gradio).
DEFAULT_HOST, DEFAULT_PORT, CONCURRENCY_LIMIT = "127.0.0.1", 7860, 2


#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("cache_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--edit-model", default=None, metavar="DIR",
                        help="EditPipeline folder for the Edit and Video tabs "
                        "(default: the bundled checkpoints/edit-demo64)")
    parser.add_argument("--generator", default=None, metavar="PKL|DIR",
                        help="replace the edit pipeline's generator (NVlabs .pkl or model folder); its encoder and "
                             "mapper must have been trained for it")
    parser.add_argument("--sr-model", default=None, metavar="DIR",
                        help="SR pipeline folder for the Upscale tab (default: the bundled checkpoints/sr-demo64-x4)")
    parser.add_argument("--hdvila", default=None, metavar="DIR",
                        help="HD-VILA model folder for the Search tab (default: the bundled checkpoints/hdvila-mini)")
    parser.add_argument("--videos", default=None, metavar="DIR",
                        help="folder of videos to search (default: demo videos, rendered on first use)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="renders, results and cached examples (default: outputs/web, else a temp folder)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_LIMIT,
                        help=f"requests run at once; the rest wait in the queue (default {CONCURRENCY_LIMIT})")


def run(args: argparse.Namespace) -> int:
    from hdvila.errors import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.concurrency < 1:
        raise UserError(f"--concurrency must be >= 1, got {args.concurrency}")
    from apps.web import launch

    launch(args)
    return 0
