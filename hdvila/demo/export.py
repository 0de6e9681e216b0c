"""Demo-domain videos, images and annotations written as real files (``hdvila demo-data OUT_DIR``).

Layout of ``OUT_DIR``::

    videos/<video_id>.mp4        H.264 mp4s that decord reads back
    images/<image_id>.png
    msrvtt_<split>.csv           MSR-VTT 1k-A style: key,vid_key,video_id,sentence (first caption)
    msrvtt_data.json             MSR-VTT style: videos[...] and sentences[{video_id, caption, sen_id}]
    hdvila_<split>.jsonl         HD-VILA style: {"clip_id", "text": [captions]}
    images_<split>.jsonl         {"image": "images/<id>.png", "caption", "attributes"}
    videos_meta_<split>.jsonl    {"clip_id", "motion", "pattern", "needs_motion", "needs_pattern", ...}

Every file is written atomically; annotations are written last, after all media exist. The
annotations of a kind with no items are not written (``--images 0``: no ``images_<split>.jsonl``;
``--videos 0``: none of the video annotation files).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from tqdm import tqdm

from hdvila.atomic import atomic_write_text
from hdvila.errors import UserError


def export_demo_data(out_dir: str | Path, *, split: str = "test", videos: int = 16, images: int = 16,
                     captions: int = 1, wording: str = "train", seed: int = 0, frames: int = 32,
                     video_resolution: int = 128, image_resolution: int = 64, fps: float = 8.0) -> dict:
    """Render and write the files listed in the module docstring.

    Returns {"out_dir", "videos", "images", "annotations": [annotation file names written]}; bad
    arguments raise :class:`~hdvila.errors.UserError` before anything is written.
    """
    from hdvila.demo.dataset import DemoImageDataset, DemoVideoDataset
    from hdvila.imageio import save_image
    from hdvila.videoio import write_video

    for name, value in (("videos", videos), ("images", images), ("frames", frames)):
        if value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")
    if videos == 0 and images == 0:
        raise UserError("--videos and --images are both 0: nothing to write; ask for at least one video or image")
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
    written = []
    if ids:
        written += _write_video_annotations(out, split, ids, texts, metas, captions, frames, fps)
    if img_rows:
        atomic_write_text(out / f"images_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in img_rows))
        written.append(f"images_{split}.jsonl")
    return {"out_dir": str(out), "videos": len(ids), "images": len(ids_img), "annotations": written}


def _write_video_annotations(out: Path, split: str, ids: list[str], texts: list[list[str]], metas: list[dict],
                             captions: int, frames: int, fps: float) -> list[str]:
    """The MSR-VTT CSV and JSON, HD-VILA jsonl and metadata files of the videos; returns their names."""
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
    return [f"msrvtt_{split}.csv", "msrvtt_data.json", f"hdvila_{split}.jsonl", f"videos_meta_{split}.jsonl"]
