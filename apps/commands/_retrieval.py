"""What ``hdvila eval-retrieval`` and ``hdvila search`` share: model, sampling, compute and cache
options, turning them into a loaded model, and the ``--json`` output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hdvila.errors import UserError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``eval-retrieval`` and ``search``: model, sampling, compute, cache."""
    parser.add_argument("--model", default=None,
                        help="model folder (config.json + model.safetensors); default: the bundled "
                             "checkpoints/hdvila-mini")
    parser.add_argument("--num-frames", "--num-frm", dest="num_frames", type=int, default=None,
                        help="frames per clip (odd); default per dataset: msrvtt 7, didemo 11, lsmdc 11, "
                             "activitynet 13, otherwise the model's num_frames")
    parser.add_argument("--sample-rate", type=int, default=None,
                        help="frame step inside a clip; default msrvtt 4, didemo 2, lsmdc 3, activitynet 4, else 4")
    parser.add_argument("--n-clips", type=int, default=None,
                        help="clips per video; default msrvtt 4, didemo 8, lsmdc 4, activitynet 8, else 4")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="compute precision; auto = fp16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--workers", type=int, default=2, help="processes decoding videos (0: none; default 2)")
    parser.add_argument("--cache-dir", default=None,
                        help="video-embedding cache (default $HDVILA_CACHE or ~/.cache/hdvila/embeddings)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="tokens per text query, [CLS]/[SEP] included (default: the processor's 50)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def load_from_args(args: argparse.Namespace, default_sampling: tuple[int, int, int] | None = None):
    """(model, processor, model id, device, dtype, cache folder or None) for :func:`add_model_arguments`' options."""
    from hdvila.retrieval.evaluate import load_model_and_processor
    from hdvila.retrieval.index import default_cache_dir, model_device_dtype, model_dir_id

    if args.batch_size < 1 or args.workers < 0:
        raise UserError("--batch-size must be >= 1 and --workers >= 0")
    model, processor, model_dir = load_model_and_processor(
        args.model, default_sampling=default_sampling, num_frames=args.num_frames, sample_rate=args.sample_rate,
        n_clips=args.n_clips, max_tokens=args.max_tokens)
    device, dtype = model_device_dtype(model, args.device, args.dtype)
    cache_root = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return model, processor, model_dir_id(model_dir, cache_root), device, dtype, cache_root


def write_json(dest: str, obj: Any) -> None:
    """``--json`` output: ``-`` prints to stdout, anything else is a file written atomically."""
    text = json.dumps(obj, indent=1)
    if dest == "-":
        print(text)
    else:
        from hdvila.atomic import atomic_write_text

        atomic_write_text(dest, text + "\n")
