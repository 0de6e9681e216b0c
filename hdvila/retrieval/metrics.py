"""Text-video retrieval metrics: R@K, median and mean rank, both directions.

Conventions (those of the reference implementations: CLIP4Clip's ``metrics.py``, Luo et al., 2021,
and the official HD-VILA code, microsoft/XPretrain):

* ``sim`` is [num_queries, num_videos] for text->video: row ``i`` is caption (query) ``i``, column
  ``j`` video ``j``; higher is more similar. Video->text uses ``sim.T``.
* A caption belongs to exactly one video (``caption_video[i]``, a column index). With one caption
  per video in video order, ``caption_video`` is ``range(V)`` and the ground truth is the diagonal.
* Ranks are 0-based internally; R@K is the percentage of queries with rank < K; median and mean
  rank are reported 1-based (``median(rank) + 1``, ``mean(rank) + 1``; an even count takes the
  mean of the two middle values, like ``numpy.median``).
* Video->text with several captions per video: a video is ranked by its BEST caption, i.e. by the
  position of the first correct caption in the video's ranked caption list.

Tie rule (``ties="pessimistic"``, the default). The rank of a query is the position of its first
correct item when all items are sorted by score and ties are broken *against* the query::

    best = max(score of the query's correct items)
    rank = #{wrong items scoring > best} + #{wrong items scoring == best}

Every query gets exactly one rank, so the denominator of R@K is always the number of queries. (Both
reference implementations take ``np.where(sorted == diagonal)``, which yields one entry per tied
score: an all-ones 3x3 matrix gives 9 "ranks" for 3 queries.) Under the pessimistic rule a model
that scores everything the same gets no credit (all-ones 3x3: ranks [2, 2, 2], R@1 = 0).
``ties="optimistic"`` counts only strictly higher wrong items (all-ones 3x3: ranks [0, 0, 0]).
Without ties both rules give the reference numbers. Scores are compared exactly (no tolerance), in
the input's own precision: float64 stays float64 (a cast to float32 would create ties), only 16-bit
floats are widened to float32, which is exact.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

KS = (1, 5, 10, 50)
TIE_RULES = ("pessimistic", "optimistic")
_CHUNK = 2048  # query rows handled at once (bounds the memory of the [rows, items] temporaries)


def _as_numpy(sim: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu()
        if sim.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; widening is exact
            sim = sim.float()
        sim = sim.numpy()
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"a similarity matrix must be 2-D and non-empty, got shape {sim.shape}")
    if not np.issubdtype(sim.dtype, np.floating) and not np.issubdtype(sim.dtype, np.integer):
        raise ValueError(f"similarities must be numbers, got dtype {sim.dtype}")
    if not np.isfinite(sim).all():
        raise ValueError("the similarity matrix has NaN or infinite entries; the features are broken")
    return sim


def query_ranks(sim: np.ndarray | torch.Tensor, correct: np.ndarray | torch.Tensor,
                ties: str = "pessimistic") -> np.ndarray:
    """0-based rank of each query's best correct item.

    sim: [Q, N] scores (query x item). correct: bool [Q, N], True where item n is a right answer for
    query q; every query needs at least one. Returns int64 [Q] (one rank per query, see the module
    docstring for the tie rule).
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    sim = _as_numpy(sim)
    correct = np.asarray(correct.cpu() if isinstance(correct, torch.Tensor) else correct, dtype=bool)
    if correct.shape != sim.shape:
        raise ValueError(f"correct {correct.shape} must have the shape of sim {sim.shape}")
    no_answer = np.flatnonzero(~correct.any(axis=1))
    if no_answer.size:
        raise ValueError(f"queries {no_answer[:10].tolist()} have no correct item")
    ranks = np.empty(sim.shape[0], dtype=np.int64)
    for start in range(0, sim.shape[0], _CHUNK):
        s, c = sim[start:start + _CHUNK], correct[start:start + _CHUNK]
        best = np.where(c, s, -np.inf).max(axis=1, keepdims=True)        # [q, 1]
        wrong = ~c
        above = ((s > best) & wrong).sum(axis=1)
        if ties == "pessimistic":
            above += ((s == best) & wrong).sum(axis=1)
        ranks[start:start + _CHUNK] = above
    return ranks


def metrics_from_ranks(ranks: Sequence[int] | np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """0-based ranks [Q] -> ``{"R@1": %, "R@5": %, ..., "MedR": 1-based, "MeanR": 1-based, "num_queries": Q}``.

    R@K in percent (share of queries with rank < K); an empty input is an error.
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"need a non-empty 1-D array of ranks, got shape {r.shape}")
    out: dict[str, float] = {f"R@{k}": float(100.0 * np.mean(r < k)) for k in ks}
    out["MedR"] = float(np.median(r) + 1)
    out["MeanR"] = float(np.mean(r) + 1)
    out["num_queries"] = int(r.size)
    return out


def _caption_video(caption_video: Sequence[int] | np.ndarray | None, q: int, v: int) -> np.ndarray:
    if caption_video is None:
        if q != v:
            raise ValueError(f"sim is {q}x{v}: with several captions per video pass caption_video "
                             f"(the video index of each caption row)")
        return np.arange(q)
    cv = np.asarray(caption_video, dtype=np.int64)
    if cv.shape != (q,):
        raise ValueError(f"caption_video needs one video index per caption row ({q}), got shape {cv.shape}")
    if cv.size and (cv.min() < 0 or cv.max() >= v):
        raise ValueError(f"caption_video has indices outside [0, {v})")
    uncaptioned = np.setdiff1d(np.arange(v), cv)
    if uncaptioned.size:
        raise ValueError(f"videos {uncaptioned[:10].tolist()} have no caption; video->text is undefined for them")
    return cv


def retrieval_ranks(sim: np.ndarray | torch.Tensor, caption_video: Sequence[int] | np.ndarray | None = None,
                    ties: str = "pessimistic") -> dict[str, np.ndarray]:
    """Ranks of both directions.

    sim: [C, V] caption x video scores. caption_video: int [C], the video (column) of each caption;
    ``None`` means C == V with the ground truth on the diagonal. Returns ``{"t2v": int64 [C],
    "v2t": int64 [V]}`` (0-based; v2t ranks each video by its best caption).
    """
    sim = _as_numpy(sim)
    q, v = sim.shape
    cv = _caption_video(caption_video, q, v)
    correct = np.zeros((q, v), dtype=bool)
    correct[np.arange(q), cv] = True
    return {"t2v": query_ranks(sim, correct, ties), "v2t": query_ranks(sim.T, correct.T, ties)}


def retrieval_metrics(sim: np.ndarray | torch.Tensor, caption_video: Sequence[int] | np.ndarray | None = None,
                      ties: str = "pessimistic", ks: Sequence[int] = KS) -> dict[str, dict[str, float]]:
    """R@K (percent), MedR and MeanR (1-based) of both directions.

    sim: [C, V] caption x video scores; caption_video as in :func:`retrieval_ranks`. Returns
    ``{"t2v": {...}, "v2t": {...}}``, each as :func:`metrics_from_ranks` (``num_queries`` is C for
    t2v and V for v2t).
    """
    ranks = retrieval_ranks(sim, caption_video, ties)
    return {name: metrics_from_ranks(r, ks) for name, r in ranks.items()}


def format_table(metrics: dict[str, dict[str, float]], ks: Sequence[int] = KS) -> str:
    """A plain-text table of :func:`retrieval_metrics`' result, one row per direction."""
    names = {"t2v": "text->video", "v2t": "video->text"}
    cols = [f"R@{k}" for k in ks] + ["MedR", "MeanR"]
    lines = [f"{'direction':<12}" + "".join(f"{c:>8}" for c in cols) + f"{'queries':>9}"]
    for key, label in names.items():
        if key in metrics:
            m = metrics[key]
            lines.append(f"{label:<12}" + "".join(f"{m[c]:>8.1f}" if c.startswith("R@") else f"{m[c]:>8.2f}"
                                                  for c in cols) + f"{m['num_queries']:>9d}")
    return "\n".join(lines)
