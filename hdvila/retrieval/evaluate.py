"""``hdvila eval-retrieval``: text-video retrieval metrics of a model on an annotated set of videos.

Usage::

    hdvila eval-retrieval --model DIR --annotations FILE --videos DIR --format msrvtt|didemo|lsmdc|activitynet|jsonl
        [--paragraph | --no-paragraph] [--split SPLIT] [--num-frm N --sample-rate R --n-clips C]
        [--batch-size B] [--device auto|cpu|cuda] [--dtype auto|fp32|fp16|bf16] [--workers W]
        [--cache-dir DIR | --no-cache] [--skip-bad] [--max-tokens L] [--ties pessimistic|optimistic]
        [--json OUT]

Steps: read the annotations (:mod:`.annotations`), find each video by id in ``--videos``
(:func:`~hdvila.retrieval.index.find_videos`), encode the videos (embeddings cached on disk, see
:mod:`.index`: a second run with the same model, videos and sampling encodes text only), encode the
captions, and score both directions with :mod:`.metrics` (dot product of L2-normalised features).

Bad input. Missing videos stop the run with the list of missing ids; videos that cannot be decoded
are all attempted first and then reported together. With ``--skip-bad`` missing and undecodable
videos (and unreadable annotation rows) are left out and listed in the output instead.

Sampling defaults per dataset (paper settings, hdvila-facts.md section 4): msrvtt 7/4/4, didemo
11/2/8, lsmdc 11/3/4, activitynet 13/4/8 (num_frm / sample_rate / n_clips); jsonl uses the model's
``num_frames``, 4 and 4.

The Python API :func:`evaluate_retrieval` is what the command runs; training code can call it with
a model in memory, and with in-memory videos or precomputed video features.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from hdvila.errors import InputFileError, UserError
from hdvila.retrieval.annotations import DATASET_SAMPLING, FORMATS, Annotations, load_annotations
from hdvila.retrieval.index import (EmbeddingCache, default_cache_dir, encode_texts, encode_videos, find_videos,
                                    model_device_dtype, model_dir_id, model_memory_id, sampling_settings)
from hdvila.retrieval.metrics import KS, TIE_RULES, format_table, retrieval_metrics

_LIST_LIMIT = 50  # ids shown in one error message


def _listing(items: Sequence[str], limit: int | None = _LIST_LIMIT) -> str:
    shown = list(items if limit is None else items[:limit])
    more = len(items) - len(shown)
    return "\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")


def evaluate_retrieval(model: Any, processor: Any, annotations: Annotations,
                       videos_dir: str | Path | None = None, *,
                       videos: Mapping[str, str | Path | torch.Tensor] | None = None,
                       video_features: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
                       batch_size: int = 8, text_batch_size: int = 128, device: str | torch.device | None = None,
                       dtype: str | torch.dtype | None = "fp32", workers: int = 0,
                       cache_dir: str | Path | None = None, model_id: str | None = None,
                       skip_bad: bool = False, ties: str = "pessimistic", progress: bool = True,
                       return_features: bool = False) -> dict[str, Any]:
    """Retrieval metrics of ``model`` on ``annotations``.

    Videos come from exactly one of: ``videos_dir`` (files found by id), ``videos`` ({id: path or
    uint8/[-1, 1] tensor [T, 3, H, W]}) or ``video_features`` (float [V, D] in ``annotations.video_ids``
    order, or {id: [D]}; nothing is decoded). ``cache_dir`` enables the on-disk embedding cache for
    file videos, keyed by ``model_id`` (default: a hash of the model's config and weights in memory).
    ``processor`` sets the sampling (``HDVILAProcessor``). ``device`` None keeps the model where it is;
    ``dtype`` "auto" = fp16 autocast on CUDA, fp32 elsewhere.

    Returns a JSON-serialisable dict: ``t2v`` and ``v2t`` (R@1/5/10/50 in percent, MedR, MeanR,
    num_queries), ``num_videos``, ``num_queries``, ``paragraph``, ``ties``, ``sampling``,
    ``videos_encoded``, ``videos_from_cache``, ``skipped_videos`` [{video_id, path, reason}],
    ``missing_videos`` [ids], ``skipped_rows`` [messages], ``truncated_queries``. With
    ``return_features`` also ``features``: {"text": [C, D], "video": [V, D], "video_ids": [V],
    "caption_video": [C]} (tensors, for the videos kept). The model's train/eval mode is restored.
    """
    sources_given = sum(x is not None for x in (videos_dir, videos, video_features))
    if sources_given != 1:
        raise ValueError("pass exactly one of videos_dir, videos and video_features")
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        dev, dt = model_device_dtype(model, device, dtype)
        return _evaluate(model, processor, annotations, videos_dir, videos, video_features, batch_size=batch_size,
                         text_batch_size=text_batch_size, device=dev, dtype=dt, workers=workers, cache_dir=cache_dir,
                         model_id=model_id, skip_bad=skip_bad, ties=ties, progress=progress,
                         return_features=return_features)
    finally:
        model.train(was_training)


def _evaluate(model, processor, ann: Annotations, videos_dir, videos, video_features, *, batch_size, text_batch_size,
              device, dtype, workers, cache_dir, model_id, skip_bad, ties, progress, return_features):
    if ties not in TIE_RULES:
        raise UserError(f"--ties must be one of {', '.join(TIE_RULES)}, got {ties!r}")
    missing: list[str] = []
    skipped: list[dict[str, str]] = []
    encoded = cached = 0
    features: dict[str, torch.Tensor] = {}
    if video_features is not None:
        if isinstance(video_features, torch.Tensor):
            if video_features.ndim != 2 or video_features.shape[0] != len(ann):
                raise ValueError(f"video_features must be [{len(ann)}, D] in annotation order, "
                                 f"got {tuple(video_features.shape)}")
            features = {vid: video_features[i].detach().float().cpu() for i, vid in enumerate(ann.video_ids)}
        else:
            features = {vid: torch.as_tensor(video_features[vid]).detach().float().cpu()
                        for vid in ann.video_ids if vid in video_features}
            missing = [vid for vid in ann.video_ids if vid not in video_features]
    else:
        if videos_dir is not None:
            found, missing = find_videos(videos_dir, ann.video_ids)
            sources = {vid: p for vid, p in found.items()}
        else:
            sources = {vid: videos[vid] for vid in ann.video_ids if vid in videos}
            missing = [vid for vid in ann.video_ids if vid not in videos]
    if missing and not skip_bad:
        where = f" in {videos_dir}" if videos_dir is not None else ""
        raise InputFileError(f"{len(missing)} of {len(ann)} videos not found{where} (looked for "
                             f"<id>.mp4/.avi/.mkv/.webm/.mov or a frame folder <id>/); pass --skip-bad to "
                             f"evaluate without them. Missing:" + _listing(missing))
    if video_features is None:
        cache = None
        if cache_dir is not None:
            mid = model_id or model_memory_id(model)
            cache = EmbeddingCache(cache_dir, mid, sampling_settings(processor, dtype))
        order = [(vid, sources[vid]) for vid in ann.video_ids if vid in sources]
        result = encode_videos(model, processor, order, cache=cache, batch_size=batch_size, device=device,
                               dtype=dtype, workers=workers, stop_encoding_on_bad=not skip_bad and cache is None,
                               progress=progress)
        if result.bad and not skip_bad:
            raise InputFileError(f"{len(result.bad)} of {len(order)} videos cannot be read; fix or remove them, "
                                 f"or pass --skip-bad to evaluate without them:"
                                 + _listing([reason for _, _, reason in result.bad], limit=None))
        skipped = [{"video_id": k, "path": label, "reason": reason} for k, label, reason in result.bad]
        features, encoded, cached = result.features, result.encoded, result.cached
    kept = ann.subset(features) if len(features) != len(ann) else ann
    if len(kept) == 0:
        raise InputFileError("No video of the annotations could be read; nothing to evaluate.")
    texts, caption_video = kept.queries()
    video_matrix = torch.stack([features[vid] for vid in kept.video_ids])          # [V, D]
    text_matrix, truncated = encode_texts(model, processor, texts, batch_size=text_batch_size, device=device,
                                          dtype=dtype, progress=progress)             # [C, D]
    sim = text_matrix @ video_matrix.T                                              # [C, V]
    metrics = retrieval_metrics(sim, caption_video, ties=ties)
    out: dict[str, Any] = {
        **metrics,
        "num_videos": len(kept), "num_queries": len(texts), "paragraph": kept.paragraph, "ties": ties,
        "annotations": ann.source,
        "sampling": {"num_frm": processor.num_frm, "sample_rate": processor.sample_rate, "n_clips": processor.n_clips},
        "videos_encoded": encoded, "videos_from_cache": cached,
        "skipped_videos": skipped, "missing_videos": missing if skip_bad else [],
        "skipped_rows": list(ann.skipped_rows), "truncated_queries": truncated,
    }
    if return_features:
        out["features"] = {"text": text_matrix, "video": video_matrix, "video_ids": list(kept.video_ids),
                           "caption_video": list(caption_video)}
    return out


# ---- command line ----------------------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``hdvila search``: model, sampling, compute, cache."""
    parser.add_argument("--model", default=None,
                        help="model folder (config.json + model.safetensors); default: the bundled "
                             "checkpoints/hdvila-mini")
    parser.add_argument("--num-frm", type=int, default=None,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="annotation file")
    parser.add_argument("--videos", required=True, help="folder with the videos (files or frame folders)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation format")
    parser.add_argument("--paragraph", action=argparse.BooleanOptionalAction, default=None,
                        help="join each video's sentences into one query (default: on for didemo, activitynet)")
    parser.add_argument("--split", default=None, help="MSR-VTT JSON only: evaluate the videos of this split")
    add_model_arguments(parser)
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out missing or unreadable videos and bad annotation rows (listed in the output)")
    parser.add_argument("--ties", choices=TIE_RULES, default="pessimistic",
                        help="tie rule for ranks (default pessimistic: tied wrong items rank ahead)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON ('-': stdout)")


def resolve_model_dir(arg: str | None) -> Path:
    """``--model`` or the bundled ``checkpoints/hdvila-mini``, with a clear error when neither exists."""
    from hdvila.errors import CheckpointError
    from hdvila.paths import bundled

    if arg is not None:
        return Path(arg)
    path = bundled("hdvila-mini")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"No --model given and the bundled model {path} is missing. Pass --model DIR (a folder "
                              f"with config.json and model.safetensors, e.g. from `hdvila convert`), or train the "
                              f"mini model and save it to {path}.")
    return path


def load_model_and_processor(args: argparse.Namespace, default_sampling: tuple[int, int, int] | None = None):
    """Model (eval mode, on ``--device``), processor with the requested sampling, model id, device, dtype."""
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.processing_hdvila import HDVILAProcessor

    model_dir = resolve_model_dir(args.model)
    model = HDVILAModel.from_pretrained(model_dir)
    num_frm, sample_rate, n_clips = default_sampling or (model.config.num_frames, 4, 4)
    num_frm = args.num_frm if args.num_frm is not None else num_frm
    sample_rate = args.sample_rate if args.sample_rate is not None else sample_rate
    n_clips = args.n_clips if args.n_clips is not None else n_clips
    if num_frm < 1 or num_frm % 2 == 0:
        raise UserError(f"--num-frm must be odd and >= 1 (the middle frame is the HR one), got {num_frm}")
    if sample_rate < 0 or n_clips < 1:
        raise UserError(f"need --sample-rate >= 0 and --n-clips >= 1, got {sample_rate} and {n_clips}")
    if args.batch_size < 1 or args.workers < 0:
        raise UserError("--batch-size must be >= 1 and --workers >= 0")
    kwargs = {"num_frm": num_frm, "sample_rate": sample_rate, "n_clips": n_clips}
    if args.max_tokens is not None:
        limit = model.config.max_position_embeddings
        if not 3 <= args.max_tokens <= limit:
            raise UserError(f"--max-tokens must be between 3 and {limit} (the text encoder's positions), "
                            f"got {args.max_tokens}")
        kwargs["max_length"] = args.max_tokens
    processor = HDVILAProcessor.from_config(model.config, **kwargs)
    device, dtype = model_device_dtype(model, args.device, args.dtype)
    cache_root = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    model_id = model_dir_id(model_dir, cache_root)
    return model, processor, model_id, device, dtype, cache_root


def run(args: argparse.Namespace) -> int:
    ann = load_annotations(args.annotations, args.format, paragraph=args.paragraph, split=args.split,
                           skip_bad_rows=args.skip_bad)
    model, processor, model_id, device, dtype, cache_root = load_model_and_processor(
        args, DATASET_SAMPLING.get(args.format))
    result = evaluate_retrieval(model, processor, ann, args.videos, batch_size=args.batch_size, device=device,
                                dtype=dtype, workers=args.workers, cache_dir=cache_root, model_id=model_id,
                                skip_bad=args.skip_bad, ties=args.ties, progress=not args.quiet)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


def write_json(dest: str, obj: Any) -> None:
    """``--json`` output: ``-`` prints to stdout, anything else is a file written atomically."""
    text = json.dumps(obj, indent=1)
    if dest == "-":
        print(text)
    else:
        from hdvila.atomic import atomic_write_text

        atomic_write_text(dest, text + "\n")


def report(result: dict[str, Any]) -> str:
    """The human-readable summary printed by the command."""
    s = result["sampling"]
    lines = [f"{result['num_videos']} videos, {result['num_queries']} queries"
             f"{' (paragraphs)' if result['paragraph'] else ''}; sampling {s['num_frm']} frames x "
             f"{s['n_clips']} clips, rate {s['sample_rate']}; ties {result['ties']}",
             f"videos encoded: {result['videos_encoded']}, from cache: {result['videos_from_cache']}",
             "", format_table({k: result[k] for k in ("t2v", "v2t")}, KS)]
    if result["truncated_queries"]:
        lines.append(f"note: {result['truncated_queries']} queries were longer than the token limit and truncated "
                     f"(see --max-tokens)")
    if result["missing_videos"]:
        lines.append(f"skipped {len(result['missing_videos'])} missing video(s):" + _listing(result["missing_videos"], None))
    if result["skipped_videos"]:
        lines.append(f"skipped {len(result['skipped_videos'])} unreadable video(s):"
                     + _listing([v["reason"] for v in result["skipped_videos"]], None))
    if result["skipped_rows"]:
        lines.append(f"skipped {len(result['skipped_rows'])} bad annotation row(s):"
                     + _listing(result["skipped_rows"], None))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    from apps.cli import main

    sys.exit(main(["eval-retrieval", *sys.argv[1:]]))
