"""``hdvila demo-data OUT_DIR``: render demo-domain videos, images and annotations to files
(:func:`hdvila.demo.export.export_demo_data` lists the layout)."""

from __future__ import annotations

import argparse

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write into (created if missing)")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    parser.add_argument("--images", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--captions", type=int, default=1, help="captions per video (default 1)")
    parser.add_argument("--wording", choices=["train", "heldout"], default="train",
                        help="caption wordings: those used in training, or held-out synonyms and phrasings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    parser.add_argument("--video-resolution", type=int, default=128)
    parser.add_argument("--image-resolution", type=int, default=64)
    parser.add_argument("--fps", type=float, default=8.0)


def run(args: argparse.Namespace) -> int:
    from hdvila.demo.export import export_demo_data
    from hdvila.device import use_cpu_threads

    use_cpu_threads("render")
    summary = export_demo_data(args.out_dir, split=args.split, videos=args.videos, images=args.images,
                               captions=args.captions, wording=args.wording, seed=args.seed, frames=args.frames,
                               video_resolution=args.video_resolution, image_resolution=args.image_resolution,
                               fps=args.fps)
    print(f"wrote {summary['videos']} videos and {summary['images']} images with annotations to {summary['out_dir']}")
    return 0
