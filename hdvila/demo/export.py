"""``hdvila demo-data OUT_DIR``: write demo-domain videos, images and annotations as real files.

Layout of ``OUT_DIR``::

    videos/<video_id>.mp4        H.264 mp4s that decord reads back
    images/<image_id>.png
    msrvtt_<split>.csv           MSR-VTT 1k-A style: key,vid_key,video_id,sentence (first caption)
    msrvtt_data.json             MSR-VTT style: videos[...] and sentences[{video_id, caption, sen_id}]
    hdvila_<split>.jsonl         HD-VILA style: {"clip_id", "text": [captions]}
    images_<split>.jsonl         {"image": "images/<id>.png", "caption", "attributes"}
    videos_meta_<split>.jsonl    {"clip_id", "motion", "pattern", "needs_motion", "needs_pattern", ...}

Every file is written atomically; annotations are written last, after all media exist.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path

from tqdm import tqdm

from hdvila.atomic import atomic_write_text
from hdvila.errors import UserError


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


def export_demo_data(out_dir: str | Path, *, split: str = "test", videos: int = 16, images: int = 16,
                     captions: int = 1, wording: str = "train", seed: int = 0, frames: int = 32,
                     video_resolution: int = 128, image_resolution: int = 64, fps: float = 8.0) -> dict:
    """Render and write the files listed in the module docstring; returns a summary dict."""
    from hdvila.demo.dataset import DemoImageDataset, DemoVideoDataset
    from hdvila.imageio import save_image
    from hdvila.videoio import write_video

    for name, value in (("videos", videos), ("images", images), ("frames", frames)):
        if value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")
    if captions < 1:
        raise UserError(f"--captions must be >= 1, got {captions}")
    if video_resolution % 2 or video_resolution < 16 or image_resolution < 16:
        raise UserError("resolutions must be >= 16 (and even for videos)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vds = DemoVideoDataset(split, videos, num_frames=frames, resolution=video_resolution, seed=seed, wording=wording)
    ids, texts, metas = [], [], []
    for i in tqdm(range(videos), desc="videos", disable=videos == 0):
        vid = f"demo_{split}_{i:05d}"
        item = vds[i]
        write_video(out / "videos" / f"{vid}.mp4", item["video"], fps=fps)
        spec = vds.spec(i)
        ids.append(vid)
        texts.append([vds.caption(i, k) for k in range(captions)])
        metas.append({"clip_id": vid, "motion": spec.motion, "pattern": spec.pattern, "shape": spec.shape,
                      "color": spec.color, "end_color": spec.end_color, "background": spec.background,
                      "size": spec.size, "needs_motion": item["needs_motion"],
                      "needs_pattern": item["needs_pattern"], "num_frames": frames, "fps": fps})
    ids_img, img_rows = [], []
    ids_ds = DemoImageDataset(split, images, resolution=image_resolution, seed=seed, wording=wording)
    for i in tqdm(range(images), desc="images", disable=images == 0):
        iid = f"demo_{split}_img_{i:05d}"
        item = ids_ds[i]
        save_image(item["image"], out / "images" / f"{iid}.png")
        spec = dataclasses.asdict(ids_ds.spec(i))
        ids_img.append(iid)
        img_rows.append({"image": f"images/{iid}.png", "caption": item["caption"],
                         "attributes": {k: spec[k] for k in ("shape", "color", "background", "size", "pattern")}
                         | {"row": spec["row"], "col": spec["col"]}})
    # Annotations last: they only ever reference media that exist.
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "vid_key", "video_id", "sentence"])
    for i, (vid, caps) in enumerate(zip(ids, texts)):
        writer.writerow([f"ret{i}", f"msr{i}", vid, caps[0]])
    atomic_write_text(out / f"msrvtt_{split}.csv", buf.getvalue())
    msr = {"videos": [{"video_id": vid, "id": i, "split": split, "category": 0, "url": "", "start time": 0.0,
                       "end time": frames / fps} for i, vid in enumerate(ids)],
           "sentences": [{"video_id": vid, "caption": c, "sen_id": len(ids) * k + i}
                         for k in range(captions) for i, (vid, caps) in enumerate(zip(ids, texts)) for c in [caps[k]]]}
    atomic_write_text(out / "msrvtt_data.json", json.dumps(msr, indent=1))
    atomic_write_text(out / f"hdvila_{split}.jsonl", "".join(
        json.dumps({"clip_id": vid, "text": caps if len(caps) > 1 else caps[0], "num_frame": frames}) + "\n"
        for vid, caps in zip(ids, texts)))
    atomic_write_text(out / f"videos_meta_{split}.jsonl", "".join(json.dumps(m) + "\n" for m in metas))
    atomic_write_text(out / f"images_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in img_rows))
    return {"out_dir": str(out), "videos": len(ids), "images": len(ids_img)}


def run(args: argparse.Namespace) -> int:
    summary = export_demo_data(args.out_dir, split=args.split, videos=args.videos, images=args.images,
                               captions=args.captions, wording=args.wording, seed=args.seed, frames=args.frames,
                               video_resolution=args.video_resolution, image_resolution=args.image_resolution,
                               fps=args.fps)
    print(f"wrote {summary['videos']} videos and {summary['images']} images with annotations to {summary['out_dir']}")
    return 0
