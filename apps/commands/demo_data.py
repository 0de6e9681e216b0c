"""``hdvila demo-data OUT_DIR``: render demo-domain videos, images and annotations to files
(:func:`hdvila.demo.export.export_demo_data` lists the layout)."""

from __future__ import annotations

import argparse
import math

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder to write into (created if missing)")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    parser.add_argument("--images", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--captions", type=int, default=1, help="captions per video: 1 to 100 (default 1)")
    parser.add_argument("--wording", choices=["train", "heldout"], default="train",
                        help="caption wordings: those used in training, or held-out synonyms and phrasings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=32, help="frames per video: 1 to 1000 (default 32)")
    parser.add_argument("--video-resolution", type=int, default=128, help="video side in px: even, 16 to 1024 "
                        "(default 128)")
    parser.add_argument("--image-resolution", type=int, default=64, help="image side in px: 16 to 1024 (default 64)")
    parser.add_argument("--fps", type=float, default=8.0, help="video frame rate: > 0 and <= 240 (default 8)")


#: Bounds of the numeric options, checked before anything is written.
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024
MAX_FRAMES = 1000
MAX_VIDEO_PIXELS = 2**27  # frames x side x side of one video, rendered in memory at once (float32: 1.5 GiB)
MAX_CAPTIONS = 100
MAX_FPS = 240.0


def check_options(args: argparse.Namespace) -> None:
    """A one-line :class:`UserError` for the first numeric option out of range."""
    for name, value in (("--videos", args.videos), ("--images", args.images)):
        if value < 0:
            raise UserError(f"{name} must be >= 0, got {value}")
    if args.videos == 0 and args.images == 0:
        raise UserError("--videos and --images are both 0: nothing to write; ask for at least one video or image")
    if not 1 <= args.captions <= MAX_CAPTIONS:
        raise UserError(f"--captions must be between 1 and {MAX_CAPTIONS} per video, got {args.captions}")
    if not 1 <= args.frames <= MAX_FRAMES:
        raise UserError(f"--frames must be between 1 and {MAX_FRAMES} per video, got {args.frames}")
    if not (math.isfinite(args.fps) and 0 < args.fps <= MAX_FPS):
        raise UserError(f"--fps must be a number > 0 and <= {MAX_FPS:g}, got {args.fps:g}")
    for name, value in (("--video-resolution", args.video_resolution), ("--image-resolution", args.image_resolution)):
        if not MIN_RESOLUTION <= value <= MAX_RESOLUTION:
            raise UserError(f"{name} must be between {MIN_RESOLUTION} and {MAX_RESOLUTION} px, got {value}")
    if args.video_resolution % 2:
        raise UserError(f"--video-resolution must be even (H.264 needs even sides), got {args.video_resolution}")
    if args.videos and args.frames * args.video_resolution ** 2 > MAX_VIDEO_PIXELS:
        raise UserError(f"--frames {args.frames} at --video-resolution {args.video_resolution} is "
                        f"{args.frames * args.video_resolution ** 2:,} pixels per video, above the limit of "
                        f"{MAX_VIDEO_PIXELS:,}; lower --frames or --video-resolution")


def run(args: argparse.Namespace) -> int:
    from hdvila.demo.export import export_demo_data
    from hdvila.device import use_cpu_threads

    check_options(args)

    use_cpu_threads("render")
    summary = export_demo_data(args.out_dir, split=args.split, videos=args.videos, images=args.images,
                               captions=args.captions, wording=args.wording, seed=args.seed, frames=args.frames,
                               video_resolution=args.video_resolution, image_resolution=args.image_resolution,
                               fps=args.fps)
    print(f"wrote {summary['videos']} videos and {summary['images']} images with annotations to {summary['out_dir']}")
    return 0
