"""Evidence for the default HD-VILA model on the demo domain: retrieval on held-out test data.

    .venv/bin/python benchmarks/quality/eval_hdvila_default.py                      # bundled checkpoints/hdvila-mini
    .venv/bin/python benchmarks/quality/eval_hdvila_default.py --model runs/hdvila-mini/model \\
        --ablation lr_only=runs/hdvila-mini-lr_only/model --ablation hr_only=runs/hdvila-mini-hr_only/model
    .venv/bin/python benchmarks/quality/eval_hdvila_default.py --smoke   # a check that it runs: 8 videos, 8 images,
                                                                         # 1 thread, in a temp dir

Steps:
1. ``export_demo_data`` writes 1,000 test videos (one caption each, training wordings) and 1,000 test
   images to ``--work_dir/test`` (mp4 + MSR-VTT CSV + jsonl), and 1,000 images with held-out wordings
   to ``--work_dir/test_heldout``. The held-out-wording video captions of the *same* videos are written
   as a jsonl next to them (the videos are identical; only the captions change). Test items use
   (shape, colour, pattern) combinations never seen in training. Exports are reused when present.
2. Text-to-video retrieval through ``hdvila eval-retrieval``'s code path (:func:`evaluate_retrieval` on
   the exported files, MSR-VTT sampling 7 frames x 4 clips, rate 4, decord decoding, on-disk embedding
   cache), for both wordings; R@1 also on the captions whose video needs motion (8 of 9 motions are
   invisible in one frame) or a fine pattern (stripes/dots, invisible at LR), ranked against all videos.
3. Text-to-image retrieval on the exported PNGs (processor ``preprocess_images`` -> ``get_image_features``).
4. Held-out wordings attribute by attribute: how often the top-1 video shares each attribute of the
   query's video, against chance and against the frozen MiniLM tower alone (held-out caption ->
   nearest training-wording caption).
5. Ablation: the same for LR-only and HR-only (single-frame) models trained with the same recipe.

Prints markdown tables; ``--json`` also writes the numbers.

How the models were trained (``hdvila/train.py``; batch 32 videos + 16 images in hard-negative groups of
4, AdamW lr 1e-3, warmup 150, linear decay, bf16 autocast, one CPU thread)::

    # the default model (6000 steps: started with 2400, extended at step 1400 by rerunning with 4000 and
    # at step 4000 by rerunning with 6000; the linear decay follows the last --max_train_steps),
    # then copied lean (fp16) with hdvila.modeling_utils.export_lean to checkpoints/hdvila-mini
    accelerate launch --num_processes 1 --mixed_precision bf16 --cpu hdvila/train.py --stage 1 --data demo \
        --output_dir runs/hdvila-mini --max_train_steps 6000 --train_batch_size 32 --image_ratio 0.5 \
        --group_size 4 --learning_rate 1e-3 --lr_warmup_steps 150 --mixed_precision bf16 --threads 1 \
        --num_workers 1 --checkpointing_steps 200 --checkpoints_total_limit 2 --resume_from_checkpoint latest \
        --validation_steps 300
    # the ablation: the same recipe at a 600-step budget for each visual input
    for v in lr_only hr_only hybrid; do
      python hdvila/train.py --stage 1 --data demo --video_input $v --output_dir runs/ablation-600/$v \
        --max_train_steps 600 --train_batch_size 32 --image_ratio 0.5 --group_size 4 --learning_rate 1e-3 \
        --lr_warmup_steps 150 --mixed_precision bf16 --threads 1 --checkpointing_steps 100 \
        --checkpoints_total_limit 1 --resume_from_checkpoint latest
    done
    python benchmarks/quality/eval_hdvila_default.py --ablation hybrid_600=runs/ablation-600/hybrid/model \
        --ablation lr_only_600=runs/ablation-600/lr_only/model --ablation hr_only_600=runs/ablation-600/hr_only/model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

CHANCE = lambda n: 100.0 / n  # noqa: E731


def export(work: Path, videos: int, images: int) -> dict[str, Path]:
    """Export the test sets (reused when complete). Returns the annotation files."""
    from hdvila.atomic import atomic_write_text
    from hdvila.demo.dataset import DemoVideoDataset
    from hdvila.demo.export import export_demo_data

    test, heldout = work / "test", work / "test_heldout"
    if not (test / "images_test.jsonl").is_file() or _lines(test / "msrvtt_test.csv") != videos + 1 \
            or _lines(test / "images_test.jsonl") != images:
        t0 = time.time()
        export_demo_data(test, split="test", videos=videos, images=images, wording="train")
        print(f"exported {videos} test videos and {images} images to {test} ({time.time() - t0:.0f}s)")
    if not (heldout / "images_test.jsonl").is_file() or _lines(heldout / "images_test.jsonl") != images:
        export_demo_data(heldout, split="test", videos=0, images=images, wording="heldout")
    # Held-out wordings of the same test videos (export_demo_data names videos demo_<split>_<index>).
    ds = DemoVideoDataset("test", videos, wording="heldout")
    rows = [json.dumps({"clip_id": f"demo_test_{i:05d}", "text": ds.caption(i)}) for i in range(videos)]
    atomic_write_text(heldout / "hdvila_test_videos.jsonl", "\n".join(rows) + "\n")
    return {"videos": test / "videos", "video_ann": test / "msrvtt_test.csv", "meta": test / "videos_meta_test.jsonl",
            "video_ann_heldout": heldout / "hdvila_test_videos.jsonl",
            "images": test / "images_test.jsonl", "images_heldout": heldout / "images_test.jsonl"}


VIDEO_ATTRIBUTES = ("shape", "color", "pattern", "motion", "background", "size", "end_color")
IMAGE_ATTRIBUTES = ("shape", "color", "pattern", "background", "size", "row", "col")


def ceiling(rows: list[dict], keys: tuple[str, ...]) -> float:
    """Expected R@1 (percent) of a perfect reader of the captioned attributes: items whose captions
    state the same attributes cannot be told apart, so a query with d such twins scores 1/(d+1)."""
    from collections import Counter

    tuples = [tuple(r[k] for k in keys) for r in rows]
    counts = Counter(tuples)
    return 100.0 * sum(1 / counts[t] for t in tuples) / len(tuples)


def read_video_meta(path: Path) -> dict[str, dict]:
    """The exported ``videos_meta_test.jsonl``: clip id -> its attribute row, in file order."""
    return {row["clip_id"]: row for row in (json.loads(line) for line in path.read_text().splitlines() if line.strip())}


def ceilings(meta: dict[str, dict], files: dict[str, Path]) -> dict[str, float]:
    videos = list(meta.values())
    images = [json.loads(line)["attributes"] for line in files["images"].read_text().splitlines() if line.strip()]
    return {"video": ceiling(videos, VIDEO_ATTRIBUTES), "image": ceiling(images, IMAGE_ATTRIBUTES)}


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else -1


def video_retrieval(model, model_dir: Path, files: dict[str, Path], meta: dict[str, dict], cache: Path,
                    workers: int) -> dict:
    """t2v/v2t metrics for both wordings plus R@1 on the motion / pattern captions."""
    from hdvila.processing_hdvila import HDVILAProcessor
    from hdvila.retrieval.annotations import DATASET_SAMPLING, load_annotations
    from hdvila.retrieval.evaluate import evaluate_retrieval
    from hdvila.retrieval.index import model_dir_id
    from hdvila.retrieval.metrics import retrieval_ranks

    num_frames, rate, clips = DATASET_SAMPLING["msrvtt"]
    processor = HDVILAProcessor.from_config(model.config, num_frames=num_frames, sample_rate=rate, n_clips=clips)
    model_id = model_dir_id(model_dir, cache)
    out = {}
    for wording, ann_file, fmt in (("train", files["video_ann"], "msrvtt"),
                                   ("heldout", files["video_ann_heldout"], "jsonl")):
        ann = load_annotations(ann_file, fmt)
        t0 = time.time()
        r = evaluate_retrieval(model, processor, ann, files["videos"], batch_size=16, dtype="fp32", workers=workers,
                               cache_dir=cache, model_id=model_id, progress=False, return_features=True)
        feats = r.pop("features")
        ranks = retrieval_ranks(feats["text"] @ feats["video"].T, feats["caption_video"])["t2v"]
        for key in ("needs_motion", "needs_pattern"):
            sel = torch.tensor([bool(meta[feats["video_ids"][v]][key]) for v in feats["caption_video"]])
            r[f"t2v_R@1_{key}"] = 100.0 * float((torch.as_tensor(ranks)[sel] < 1).float().mean())
            r[f"num_{key}"] = int(sel.sum())
        top1 = (feats["text"] @ feats["video"].T).argmax(dim=1)
        r["top1_attribute_match"] = attribute_match(
            [meta[feats["video_ids"][v]] for v in feats["caption_video"]],
            [meta[feats["video_ids"][int(v)]] for v in top1])
        r["seconds"] = time.time() - t0
        out[wording] = r
    return out


MATCH_ATTRIBUTES = ("shape", "color", "pattern", "motion", "background", "size")


def attribute_match(queries: list[dict], retrieved: list[dict]) -> dict[str, float]:
    """Percent of queries whose top-1 item has the query item's value, per attribute (``all``: every
    attribute at once). Rows are video metadata dicts."""
    out = {k: 100.0 * sum(q[k] == r[k] for q, r in zip(queries, retrieved)) / len(queries) for k in MATCH_ATTRIBUTES}
    out["all"] = 100.0 * sum(all(q[k] == r[k] for k in MATCH_ATTRIBUTES)
                             for q, r in zip(queries, retrieved)) / len(queries)
    return out


def attribute_chance(rows: list[dict]) -> dict[str, float]:
    """Expected :func:`attribute_match` of a random top-1 (sum of squared value frequencies)."""
    from collections import Counter

    out = {}
    for k in MATCH_ATTRIBUTES:
        counts = Counter(r[k] for r in rows)
        out[k] = 100.0 * sum((c / len(rows)) ** 2 for c in counts.values())
    return out


@torch.no_grad()
def text_tower_reference(files: dict[str, Path], meta: dict[str, dict]) -> dict[str, float]:
    """What the frozen text tower alone carries across wordings: each held-out video caption is matched
    to the nearest training-wording caption (of the same 1,000 videos) by the untrained MiniLM sentence
    embedding (masked mean of its last layer, as sentence-transformers pools it); per-attribute
    agreement of the matched caption's video, as :func:`attribute_match`."""
    from hdvila.configuration_hdvila import HDVILAConfig
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.processing_hdvila import HDVILAProcessor
    from hdvila.retrieval.annotations import load_annotations

    config = HDVILAConfig.preset("mini", stage=1)
    tower = HDVILAModel(config).eval()
    processor = HDVILAProcessor.from_config(config)

    def embed(texts: list[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(texts), 128):
            t = processor.tokenize(texts[i:i + 128])
            h = tower.encode_text(t["input_ids"], t["attention_mask"])
            m = t["attention_mask"].unsqueeze(-1).to(h.dtype)
            chunks.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(chunks)

    train = load_annotations(files["video_ann"], "msrvtt")
    held = load_annotations(files["video_ann_heldout"], "jsonl")
    train_caps = [(c, v) for v, caps in zip(train.video_ids, train.captions) for c in caps]
    held_caps = [(c, v) for v, caps in zip(held.video_ids, held.captions) for c in caps]
    sims = embed([c for c, _ in held_caps]) @ embed([c for c, _ in train_caps]).T
    nearest = sims.argmax(dim=1)
    return attribute_match([meta[v] for _, v in held_caps], [meta[train_caps[int(j)][1]] for j in nearest])


@torch.no_grad()
def image_retrieval(model, files: dict[str, Path]) -> dict:
    from hdvila.processing_hdvila import HDVILAProcessor
    from hdvila.retrieval.index import encode_texts
    from hdvila.retrieval.metrics import retrieval_metrics

    processor = HDVILAProcessor.from_config(model.config)
    out = {}
    image_feats = None
    for wording, path in (("train", files["images"]), ("heldout", files["images_heldout"])):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if image_feats is None:  # the same images in both files (same split, seed and indices)
            chunks = []
            for i in range(0, len(rows), 64):
                pix = processor.preprocess_images([str(path.parent / r["image"]) for r in rows[i:i + 64]])
                chunks.append(model.get_image_features(pix))
            image_feats = torch.cat(chunks)
        text = encode_texts(model, processor, [r["caption"] for r in rows], progress=False)[0]
        out[wording] = retrieval_metrics(text @ image_feats.T)
    return out


def evaluate_model(name: str, model_dir: Path, files: dict[str, Path], meta: dict[str, dict], cache: Path,
                   workers: int) -> dict:
    from hdvila.modeling_hdvila import HDVILAModel

    model = HDVILAModel.from_pretrained(model_dir).eval()
    t0 = time.time()
    res = {"model": str(model_dir), "video_input": model.config.video_input,
           "video": video_retrieval(model, model_dir, files, meta, cache, workers),
           "image": image_retrieval(model, files)}
    print(f"evaluated {name} ({model_dir}) in {time.time() - t0:.0f}s", flush=True)
    return res


def tables(results: dict[str, dict], n_videos: int, n_images: int, ceil: dict[str, float]) -> str:
    lines = []
    main = next(iter(results))
    r = results[main]
    lines += [f"### Text-to-video retrieval, {n_videos} held-out test videos (unseen attribute combinations), "
              f"one caption each; model `{main}`", "",
              "| captions | R@1 | R@5 | R@10 | MedR | v2t R@1 | R@1 (needs motion) | R@1 (needs pattern) |",
              "|---|---|---|---|---|---|---|---|"]
    for wording in ("train", "heldout"):
        v = r["video"][wording]
        lines.append(f"| {wording} wordings | {v['t2v']['R@1']:.1f} | {v['t2v']['R@5']:.1f} | {v['t2v']['R@10']:.1f} | "
                     f"{v['t2v']['MedR']:.0f} | {v['v2t']['R@1']:.1f} | {v['t2v_R@1_needs_motion']:.1f} "
                     f"(n={v['num_needs_motion']}) | {v['t2v_R@1_needs_pattern']:.1f} (n={v['num_needs_pattern']}) |")
    lines += ["", f"Chance R@1: {CHANCE(n_videos):.1f}%. Ceiling R@1 {ceil['video']:.1f}%: several test videos share "
              f"every captioned attribute (video captions state shape, colour, pattern, size, motion and "
              f"background, not position), and a perfect attribute reader scores 1/(d+1) on a query with d "
              f"such twins.", "",
              f"### Text-to-image retrieval, {n_images} held-out test images (64 px); model `{main}`", "",
              "| captions | R@1 | R@5 | R@10 | MedR | i2t R@1 |", "|---|---|---|---|---|---|"]
    for wording in ("train", "heldout"):
        m = r["image"][wording]
        lines.append(f"| {wording} wordings | {m['t2v']['R@1']:.1f} | {m['t2v']['R@5']:.1f} | {m['t2v']['R@10']:.1f} | "
                     f"{m['t2v']['MedR']:.0f} | {m['v2t']['R@1']:.1f} |")
    lines += ["", f"Chance R@1: {CHANCE(n_images):.1f}%; ceiling R@1 {ceil['image']:.1f}% (images sharing every "
                  f"captioned attribute, position included)."]
    if len(results) > 1:
        lines += ["", f"### Ablation: visual input (same recipe), text-to-video R@1 on {n_videos} test videos, "
                      "training wordings", "",
                  "| model | video input | R@1 all | R@1 needs motion | R@1 needs pattern | R@5 all | "
                  "R@1 held-out wordings | t2i R@1 |", "|---|---|---|---|---|---|---|---|"]
        for name, r in results.items():
            v, h = r["video"]["train"], r["video"]["heldout"]
            lines.append(f"| {name} | {r['video_input']} | {v['t2v']['R@1']:.1f} | {v['t2v_R@1_needs_motion']:.1f} | "
                         f"{v['t2v_R@1_needs_pattern']:.1f} | {v['t2v']['R@5']:.1f} | {h['t2v']['R@1']:.1f} | "
                         f"{r['image']['train']['t2v']['R@1']:.1f} |")
    return "\n".join(lines)


def wording_table(result: dict, words: dict[str, dict[str, float]]) -> str:
    """Attribute-level view of the held-out wordings: how often the top-1 video has each attribute of
    the query's video, against chance and against what the frozen text tower alone carries."""
    keys = MATCH_ATTRIBUTES
    lines = ["", "### Held-out wordings, attribute by attribute: share of queries whose top-1 has the query's value",
             "", "| | " + " | ".join(keys) + " | all |", "|---|" + "---|" * (len(keys) + 1)]

    def row(name: str, m: dict[str, float]) -> str:
        return f"| {name} | " + " | ".join(f"{m[k]:.1f}" for k in keys) + " | " + \
            (f"{m['all']:.1f}" if "all" in m else "-") + " |"
    lines.append(row("chance (random top-1)", words["chance"]))
    lines.append(row("frozen MiniLM alone: held-out caption -> nearest training-wording caption", words["tower"]))
    lines.append(row("model, text-to-video, training wordings", result["video"]["train"]["top1_attribute_match"]))
    lines.append(row("model, text-to-video, held-out wordings", result["video"]["heldout"]["top1_attribute_match"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from hdvila.paths import bundled

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(bundled("hdvila-mini")), help="default model folder")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                   help="further models to compare (e.g. lr_only=runs/hdvila-mini-lr_only/model)")
    p.add_argument("--work_dir", default=str(REPO / "runs" / "eval_hdvila_default"))
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--workers", type=int, default=1, help="video decoding processes")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--export_only", action="store_true", help="only write the test sets")
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): 8 test videos and 8 images exported to a temporary folder "
                        "(instead of --work_dir), 1 thread, no --json; the numbers mean nothing")
    args = p.parse_args(argv)
    if args.smoke:
        args.videos, args.images, args.threads, args.workers, args.json = 8, 8, 1, 1, None
        with tempfile.TemporaryDirectory(prefix="eval-hdvila-smoke-") as tmp:
            args.work_dir = tmp
            return run(p, args)
    return run(p, args)


def run(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    files = export(work, args.videos, args.images)
    if args.export_only:
        return {}
    models = {"default": Path(args.model)}
    for spec in args.ablation:
        name, _, folder = spec.partition("=")
        if not folder:
            p.error(f"--ablation needs NAME=DIR, got {spec!r}")
        models[name] = Path(folder)
    meta = read_video_meta(files["meta"])
    results = {name: evaluate_model(name, folder, files, meta, work / "embedding_cache", args.workers)
               for name, folder in models.items()}
    print()
    ceil = ceilings(meta, files)
    words = {"chance": attribute_chance(list(meta.values())), "tower": text_tower_reference(files, meta)}
    print(tables(results, args.videos, args.images, ceil))
    print(wording_table(results["default"], words))
    if args.json:
        Path(args.json).write_text(json.dumps({"ceiling_R@1": ceil, "heldout_reference": words, "models": results},
                                              indent=1, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
