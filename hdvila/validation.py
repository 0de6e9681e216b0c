"""In-memory retrieval validation during training: features of a held-out set
(:func:`hdvila.data.demo_eval_set`) and the R@K numbers the training scripts log."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.no_grad()
def embed_eval_set(model: nn.Module, processor: Any, data: dict[str, Any], batch_size: int = 32,
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """fp32 features of an in-memory eval set (:func:`hdvila.data.demo_eval_set`)."""
    from hdvila.retrieval.index import encode_texts

    was = model.training
    model.eval()
    try:
        out: dict[str, torch.Tensor] = {}
        if data["hr"] is not None:
            feats = [model.get_video_features(data["hr"][i:i + batch_size].to(device).float(),
                                              data["lr"][i:i + batch_size].to(device).float()).cpu()
                     for i in range(0, len(data["hr"]), batch_size)]
            out["video"] = torch.cat(feats)
            out["text"] = encode_texts(model, processor, data["captions"], device=device, progress=False)[0]
        if data.get("images") is not None:
            feats = [model.get_image_features(data["images"][i:i + batch_size].to(device).float()).cpu()
                     for i in range(0, len(data["images"]), batch_size)]
            out["image"] = torch.cat(feats)
            out["image_text"] = encode_texts(model, processor, data["image_captions"], device=device,
                                             progress=False)[0]
        return out
    finally:
        model.train(was)


def retrieval_summary(feats: dict[str, torch.Tensor], data: dict[str, Any] | None = None) -> dict[str, float]:
    """Flat R@1/5/10 numbers (percent) of in-memory features: video t2v/v2t, image t2i/i2t, and t2v R@1
    on the captions that need motion / a pattern (ranked against all videos)."""
    from hdvila.retrieval.metrics import retrieval_metrics, retrieval_ranks

    out: dict[str, float] = {}
    if "video" in feats:
        sim = feats["text"] @ feats["video"].T
        m = retrieval_metrics(sim)
        for k in (1, 5, 10):
            out[f"t2v_R@{k}"] = m["t2v"][f"R@{k}"]
        out["v2t_R@1"] = m["v2t"]["R@1"]
        out["t2v_MedR"] = m["t2v"]["MedR"]
        if data is not None and len(data.get("needs_motion", [])):
            ranks = torch.as_tensor(retrieval_ranks(sim)["t2v"])
            for key in ("needs_motion", "needs_pattern"):
                sel = data[key]
                if sel.any():
                    out[f"t2v_R@1_{key}"] = 100.0 * float((ranks[sel] < 1).float().mean())
    if "image" in feats:
        m = retrieval_metrics(feats["image_text"] @ feats["image"].T)
        for k in (1, 5, 10):
            out[f"t2i_R@{k}"] = m["t2v"][f"R@{k}"]
        out["i2t_R@1"] = m["v2t"]["R@1"]
    return out


def validation_metrics(model: nn.Module, processor: Any, data: dict[str, Any], *, device: torch.device | str,
                       videos_dir: str | None = None) -> dict[str, float]:
    """R@K numbers (percent) of ``model`` on a validation set: ``data`` is a
    :func:`hdvila.data.demo_eval_set` (embedded in memory, :func:`retrieval_summary`) or
    ``{"annotations": Annotations}`` of video files in ``videos_dir`` (``hdvila eval-retrieval``'s code
    path: t2v R@1/5/10 and v2t R@1)."""
    if "annotations" not in data:
        return retrieval_summary(embed_eval_set(model, processor, data, device=device), data)
    from hdvila.retrieval.evaluate import evaluate_retrieval

    r = evaluate_retrieval(model, processor, data["annotations"], videos_dir, device=device, dtype="fp32",
                           progress=False)
    return {f"t2v_R@{k}": r["t2v"][f"R@{k}"] for k in (1, 5, 10)} | {"v2t_R@1": r["v2t"]["R@1"]}
