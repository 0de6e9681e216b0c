"""Text-video retrieval metrics of a model on an annotated set of videos (``hdvila eval-retrieval``).

Steps: read the annotations (:mod:`.annotations`), find each video by id in the videos folder
(:func:`locate_videos`), encode the videos (embeddings cached on disk, see :mod:`.index`: a second
run with the same model, videos and sampling encodes text only), encode the captions, and score both
directions with :mod:`.metrics` (dot product of L2-normalised features).

Bad input. Missing videos stop the run with the list of missing ids; videos that cannot be decoded
are all attempted first and then reported together. With ``skip_bad`` (``--skip-bad``) missing and
undecodable videos (and unreadable annotation rows) are left out and listed in the output instead.

Sampling defaults per dataset (:data:`~hdvila.retrieval.annotations.DATASET_SAMPLING`, the frame
sampling of the HD-VILA paper's retrieval fine-tuning, Xue et al., CVPR 2022): msrvtt 7/4/4, didemo
11/2/8, lsmdc 11/3/4, activitynet 13/4/8 (num_frames / sample_rate / n_clips); jsonl uses the model's
``num_frames``, 4 and 4.

:func:`evaluate_retrieval` is what the command runs; training code can call it with a model in
memory, and with in-memory videos or precomputed video features. :func:`load_model_and_processor`
loads a model folder (default: the bundled ``checkpoints/hdvila-mini``) with the requested sampling.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from hdvila.errors import InputFileError, UserError
from hdvila.retrieval.annotations import VIDEO_ID_EXTENSIONS, Annotations
from hdvila.retrieval.index import (
    EmbeddingCache,
    encode_texts,
    encode_videos,
    find_videos,
    model_device_dtype,
    model_memory_id,
    sampling_settings,
)
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
            found, missing = locate_videos(videos_dir, ann.video_ids)
            sources = {vid: p for vid, p in found.items()}
        else:
            sources = {vid: videos[vid] for vid in ann.video_ids if vid in videos}
            missing = [vid for vid in ann.video_ids if vid not in videos]
    if missing and not skip_bad:
        where = f" in {videos_dir}" if videos_dir is not None else ""
        raise InputFileError(f"{len(missing)} of {len(ann)} videos not found{where} (looked for "
                             f"<id>.mp4/.avi/.mkv/.webm/.mov, a file named <id> or a frame folder <id>/); pass "
                             f"--skip-bad to evaluate without them. Missing:" + _listing(missing))
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
        "sampling": {"num_frames": processor.num_frames, "sample_rate": processor.sample_rate,
                     "n_clips": processor.n_clips},
        "videos_encoded": encoded, "videos_from_cache": cached,
        "skipped_videos": skipped, "missing_videos": missing if skip_bad else [],
        "skipped_rows": list(ann.skipped_rows), "truncated_queries": truncated,
    }
    if return_features:
        out["features"] = {"text": text_matrix, "video": video_matrix, "video_ids": list(kept.video_ids),
                           "caption_video": list(caption_video)}
    return out


def locate_videos(videos_dir: str | os.PathLike, ids: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """:func:`~hdvila.retrieval.index.find_videos`, plus ids that name a file of another container.

    DiDeMo ids keep the extension of the original upload (``.mpg``, ``.wmv``, ``.m4v``, ``.3gp``,
    ``.mts``, ``.3g2``, ...; :data:`~hdvila.retrieval.annotations.VIDEO_ID_EXTENSIONS`): such an id
    is found as the file of exactly that name below ``videos_dir`` (the shallowest one), else as a
    transcoded copy under the id without its extension (``x.wmv`` -> ``x.mp4``). Returns ({id: path},
    [ids not found] in input order).
    """
    found, missing = find_videos(videos_dir, ids)
    if not missing:
        return found, missing
    wanted, own = set(missing), {}
    for dirpath, dirnames, filenames in os.walk(videos_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name in wanted:
                path = Path(dirpath) / name
                depth = len(path.relative_to(videos_dir).parts)
                own[name] = min(own.get(name, (depth, str(path), path)), (depth, str(path), path))
    found.update({vid: own[vid][2] for vid in missing if vid in own})
    stems = {vid: os.path.splitext(vid)[0] for vid in missing
             if vid not in own and os.path.splitext(vid)[1].lower() in VIDEO_ID_EXTENSIONS}
    by_stem = find_videos(videos_dir, sorted(set(stems.values())))[0] if stems else {}
    found.update({vid: by_stem[stem] for vid, stem in stems.items() if stem in by_stem})
    return found, [vid for vid in missing if vid not in found]


def load_model_and_processor(model_dir: str | os.PathLike | None = None, *,
                             default_sampling: tuple[int, int, int] | None = None, num_frames: int | None = None,
                             sample_rate: int | None = None, n_clips: int | None = None,
                             max_tokens: int | None = None):
    """An :class:`~hdvila.HDVILAModel` (eval mode, CPU) and its processor; returns (model, processor, model folder).

    ``model_dir`` None means the bundled ``checkpoints/hdvila-mini``. Sampling: ``num_frames`` /
    ``sample_rate`` / ``n_clips`` where given, else ``default_sampling`` (a dataset's, see
    :data:`~hdvila.retrieval.annotations.DATASET_SAMPLING`), else the model's ``num_frames``, 4 and 4.
    ``max_tokens``: tokens per text query ([CLS]/[SEP] included; default the processor's). Bad
    values raise :class:`~hdvila.errors.UserError` naming the command-line option.
    """
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    model_dir = resolve_model_path(model_dir, "hdvila-mini", option="--model", accepts=(
        "a folder with config.json and model.safetensors (e.g. from `hdvila convert hdvila`)"))
    model = HDVILAModel.from_pretrained(model_dir)
    defaults = default_sampling or (model.config.num_frames, 4, 4)
    num_frames, sample_rate, n_clips = (given if given is not None else default for given, default in
                                        zip((num_frames, sample_rate, n_clips), defaults))
    if num_frames < 1 or num_frames % 2 == 0:
        raise UserError(f"--num-frames must be odd and >= 1 (the middle frame is the HR one), got {num_frames}")
    if sample_rate < 0 or n_clips < 1:
        raise UserError(f"need --sample-rate >= 0 and --n-clips >= 1, got {sample_rate} and {n_clips}")
    kwargs = {"num_frames": num_frames, "sample_rate": sample_rate, "n_clips": n_clips}
    if max_tokens is not None:
        limit = model.config.max_position_embeddings
        if not 3 <= max_tokens <= limit:
            raise UserError(f"--max-tokens must be between 3 and {limit} (the text encoder's positions), "
                            f"got {max_tokens}")
        kwargs["max_length"] = max_tokens
    return model, HDVILAProcessor.from_config(model.config, **kwargs), Path(model_dir)


def report(result: dict[str, Any]) -> str:
    """The human-readable summary of :func:`evaluate_retrieval`'s result (what the command prints)."""
    s = result["sampling"]
    lines = [f"{result['num_videos']} videos, {result['num_queries']} queries"
             f"{' (paragraphs)' if result['paragraph'] else ''}; sampling {s['num_frames']} frames x "
             f"{s['n_clips']} clips, rate {s['sample_rate']}; ties {result['ties']}",
             f"videos encoded: {result['videos_encoded']}, from cache: {result['videos_from_cache']}",
             "", format_table({k: result[k] for k in ("t2v", "v2t")}, KS)]
    if result["truncated_queries"]:
        lines.append(f"note: {result['truncated_queries']} queries were longer than the token limit and truncated "
                     f"(see --max-tokens)")
    if result["missing_videos"]:
        lines.append(f"skipped {len(result['missing_videos'])} missing video(s):"
                     + _listing(result["missing_videos"], None))
    if result["skipped_videos"]:
        lines.append(f"skipped {len(result['skipped_videos'])} unreadable video(s):"
                     + _listing([v["reason"] for v in result["skipped_videos"]], None))
    if result["skipped_rows"]:
        lines.append(f"skipped {len(result['skipped_rows'])} bad annotation row(s):"
                     + _listing(result["skipped_rows"], None))
    return "\n".join(lines)

