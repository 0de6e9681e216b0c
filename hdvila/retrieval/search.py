"""Text-to-video search over a folder of videos (``hdvila search VIDEO_DIR "a red star moving left"``).

Every video file (.mp4, .avi, .mkv, .webm, .mov) and frame folder below ``VIDEO_DIR`` is indexed
through the on-disk embedding cache of :mod:`.index` (the one ``eval-retrieval`` uses), so only new
or changed videos are decoded and encoded; then the query's embedding is compared with every video
by cosine similarity and the ``top`` best are returned (rank, score, file). Videos that cannot be
decoded are left out of the search and listed in the result (a search should still answer when one
file of a folder is broken; the command prints them as warnings on stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hdvila.errors import InputFileError, TextInputError, UserError
from hdvila.retrieval.index import EmbeddingCache, encode_texts, encode_videos, list_videos, sampling_settings


def search_videos(model: Any, processor: Any, videos_dir: str | Path, query: str, *, top: int = 5,
                  cache_dir: str | Path | None = None, model_id: str | None = None, batch_size: int = 8,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, workers: int = 0,
                  progress: bool = True) -> dict[str, Any]:
    """Rank the videos below ``videos_dir`` for the text ``query``.

    Returns {"results": [{"rank" (1-based), "score" (cosine similarity), "file"}] (at most ``top``,
    best first; equal scores keep file order), "num_videos" (searched), "skipped": [{"file", "reason"}],
    "videos_encoded", "videos_from_cache"}. The cache is used when ``cache_dir`` and ``model_id`` are
    given.
    """
    if not isinstance(query, str) or not query.strip():
        raise TextInputError("The search query is empty; describe the video you are looking for.")
    if top < 1:
        raise UserError(f"--top must be >= 1, got {top}")
    files = list_videos(videos_dir)
    if not files:
        raise InputFileError(f"{videos_dir}: no videos found (looked for .mp4/.avi/.mkv/.webm/.mov files and "
                             f"folders of numbered frames).")
    cache = None
    if cache_dir is not None and model_id is not None:
        cache = EmbeddingCache(cache_dir, model_id, sampling_settings(processor, dtype))
    sources = [(str(p), p) for p in files]
    enc = encode_videos(model, processor, sources, cache=cache, batch_size=batch_size, device=device, dtype=dtype,
                        workers=workers, progress=progress, desc="indexing")
    kept = [key for key, _ in sources if key in enc.features]
    skipped = [{"file": label, "reason": reason} for _, label, reason in enc.bad]
    if not kept:
        raise InputFileError(f"{videos_dir}: none of the {len(files)} videos could be read:"
                             + "".join(f"\n  {s['reason']}" for s in skipped))
    text, _ = encode_texts(model, processor, [query], device=device, dtype=dtype, progress=False)   # [1, D]
    video = torch.stack([enc.features[k] for k in kept])                                          # [V, D]
    scores = (video @ text[0]).tolist()
    order = sorted(range(len(kept)), key=lambda i: -scores[i])[:top]   # stable: ties keep file order
    results = [{"rank": r + 1, "score": float(scores[i]), "file": kept[i]} for r, i in enumerate(order)]
    return {"query": query, "results": results, "num_videos": len(kept), "skipped": skipped,
            "videos_encoded": enc.encoded, "videos_from_cache": enc.cached}
