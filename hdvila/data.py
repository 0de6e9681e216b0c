"""Training data for HD-VILA: demo-domain batches rendered on the fly, and annotated video files.

Both sources are *step-indexed*: micro-batch ``m`` of process ``rank`` (of ``world``) is a pure
function of ``(seed, m, rank, world)``, laid out by :mod:`hdvila.training.sampling` (sample ``j`` of
that micro-batch is global sample ``p = (m * world + rank) * batch_size + j``). A resumed run
therefore sees exactly the batches a straight run would (no sampler state to save), and any number
of DataLoader workers may build them.

A micro-batch is a dict:

``input_ids``, ``attention_mask``   int64 [B + Bi, L]: the B video captions, then the Bi image captions
``hr_frames``                       float [B, n_clips, 3, Hh, Wh]   (normalised pixels, processor geometry)
``lr_frames``                       float [B, n_clips, F-1, 3, Hl, Wl]
``images``                          float [Bi, 3, Hh, Wh]           (normalised; only when Bi > 0)
``needs_motion``, ``needs_pattern`` bool [B] (demo only)

Demo domain (:class:`DemoStepBatches`). Videos come from ``DemoVideoDataset`` (train split); only
the frames the hybrid sampler picks (7 per clip) are rendered. Clip middles are random (training
sampling); the crop is the test-time centre crop and there is **no flip**: demo captions say "moving
left" and "in the top right", which a horizontal flip would falsify. Images come from
``DemoImageDataset`` (64 px) and are embedded by the model as static clips (``images=``), so
image-text similarity is trained in the same space.

Annotated files (:class:`AnnotationStepBatches`). Any format of :mod:`hdvila.retrieval.annotations`;
each epoch visits every video once in a seeded random order, with one random caption of the video;
frames are decoded with decord through :meth:`HDVILAProcessor.load_video` with the paper's training
augmentation (random clip middles, random crop, flip p=1/3). Optional image-caption rows (jsonl
``{"image": path, "caption": str}``, as ``hdvila demo-data`` writes) add still images.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hdvila.errors import InputFileError
from hdvila.processing_hdvila import HDVILAProcessor
from hdvila.training.sampling import EpochShuffle, batch_positions

DEMO_VIDEO_FRAMES = 32       # frames of a demo video (DemoVideoDataset default)
_HUGE = 10 ** 12             # "length" of the endless demo stream


def _item_rng(seed: int, stream: int, index: int) -> random.Random:
    return random.Random(f"{seed}/{stream}/{index}")


class StepBatches(Dataset):
    """Base: ``self[m]`` is micro-batch ``m`` of this process (see the module docstring)."""

    def __init__(self, batch_size: int, image_batch_size: int = 0, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, length: int = _HUGE) -> None:
        if batch_size < 0 or image_batch_size < 0 or batch_size + image_batch_size < 1:
            raise ValueError(f"need batch_size >= 0 and image_batch_size >= 0, not both 0; got {batch_size}, "
                             f"{image_batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.batch_size, self.image_batch_size = batch_size, image_batch_size
        self.rank, self.world_size, self.seed, self.length = rank, world_size, seed, length

    def __len__(self) -> int:
        return self.length

    def positions(self, m: int, per_batch: int) -> list[int]:
        """Global sample positions of micro-batch ``m`` of this process, ``per_batch`` per batch."""
        return list(batch_positions(m, per_batch, rank=self.rank, world_size=self.world_size))

    def __getitem__(self, m: int) -> dict[str, Any]:
        raise NotImplementedError


# Hard-negative groups (see DemoStepBatches): items of a group share these attributes.
VIDEO_GROUP_KEYS = (("shape", "color", "pattern", "background"),   # differ in motion (and size)
                    ("shape", "color", "background"))              # differ in pattern / motion / size
IMAGE_GROUP_KEYS = (("shape", "color", "pattern"),                  # differ in position / size / background
                    ("color", "pattern", "background"))             # differ in shape / position / size
VIDEO_POOL, IMAGE_POOL = 1024, 512                                  # candidate items per micro-batch
# Counterfactual caption negatives of an image (DemoStepBatches.negative_captions) change these in turn;
# shape twice: the attribute a still's embedding reads worst.
NEGATIVE_ATTRIBUTES = ("shape", "color", "pattern", "shape", "size", "background")
# The value-prompt loss (DemoStepBatches(value_prompts=True)): per attribute, in the order of an image's
# ``labels``, the still must pick the short prompt of its value ("a star") among the attribute's others.
VALUE_ATTRIBUTES = ("shape", "color", "background", "size", "pattern")


def value_prompt_texts() -> list[str]:
    """The short prompts of every value of every attribute of :data:`VALUE_ATTRIBUTES`, concatenated
    in that order (:func:`hdvila.demo.captions.value_prompts`, training wording)."""
    from hdvila.demo.captions import value_prompts

    return [t for a in VALUE_ATTRIBUTES for t in value_prompts(a)]


def value_prompt_sizes() -> list[int]:
    """How many prompts each attribute of :data:`VALUE_ATTRIBUTES` has in :func:`value_prompt_texts`."""
    from hdvila.demo.attributes import ATTRIBUTES

    return [len(ATTRIBUTES[a]) for a in VALUE_ATTRIBUTES]


def grouped_indices(specs: Sequence[Any], first_index: int, count: int, group_size: int,
                    keys: Sequence[Sequence[str]], rng: np.random.Generator) -> list[int]:
    """Pick ``count`` item indices from the candidates ``first_index + i`` (spec ``specs[i]``): groups of
    ``group_size`` items sharing the attributes of ``keys[g % len(keys)]`` (group ``g``), the rest (and any
    group that cannot be filled) in candidate order. Deterministic given ``rng``."""
    used: set[int] = set()
    chosen: list[int] = []
    for g in range(count // group_size if group_size > 1 else 0):
        buckets: dict[tuple, list[int]] = {}
        for i, spec in enumerate(specs):
            if i not in used:
                buckets.setdefault(tuple(getattr(spec, a) for a in keys[g % len(keys)]), []).append(i)
        full = [members for members in buckets.values() if len(members) >= group_size]
        if not full:
            break
        members = full[int(rng.integers(len(full)))][:group_size]
        used.update(members)
        chosen += members
    for i in range(len(specs)):
        if len(chosen) >= count:
            break
        if i not in used:
            used.add(i)
            chosen.append(i)
    return [first_index + i for i in chosen[:count]]


class DemoStepBatches(StepBatches):
    """Demo-domain micro-batches rendered on the fly (module docstring).

    Hard negatives (``group_size`` > 1): the demo test split holds few (shape, colour, pattern)
    combinations, so a test caption competes with several videos that differ only in motion or
    pattern, while random training batches almost never hold such pairs. Each micro-batch therefore
    looks at a private, disjoint block of candidate items (``VIDEO_POOL`` videos, ``IMAGE_POOL`` images;
    only their specs are drawn, which is cheap) and takes groups of ``group_size`` items that share
    attributes (``VIDEO_GROUP_KEYS`` / ``IMAGE_GROUP_KEYS``, alternating); only the chosen items are
    rendered. ``group_size`` 1 takes consecutive items.

    ``value_prompts`` adds every attribute's short prompts (``value_input_ids``, ...) and ``image_labels``
    (also alone) each image's value indices [n, 5] in :data:`VALUE_ATTRIBUTES` order, for the
    value-prompt and attribute losses of :class:`hdvila.objectives.ContrastiveObjective`.
    """

    def __init__(self, processor: HDVILAProcessor, batch_size: int, image_batch_size: int = 0, *,
                 split: str = "train", wording: str = "train", image_resolution: int = 64,
                 video_resolution: int = 128, group_size: int = 4, caption_negatives: int = 0,
                 value_prompts: bool = False, image_labels: bool = False, **kwargs: Any) -> None:
        super().__init__(batch_size, image_batch_size, **kwargs)
        from hdvila.demo.dataset import DemoImageDataset, DemoVideoDataset

        if caption_negatives < 0:
            raise ValueError(f"caption_negatives must be >= 0, got {caption_negatives}")
        self.processor, self.group_size, self.caption_negatives = processor, group_size, caption_negatives
        self.value_prompts, self.image_labels = value_prompts, image_labels or value_prompts
        self.videos = DemoVideoDataset(split, _HUGE, num_frames=DEMO_VIDEO_FRAMES, resolution=video_resolution,
                                       seed=self.seed, wording=wording)
        self.images = DemoImageDataset(split, _HUGE, resolution=image_resolution, seed=self.seed, wording=wording)

    def video_item(self, index: int) -> dict[str, Any]:
        """Video ``index``: its training clips (random middles, centre crop, no flip) and caption."""
        clips = self.processor.sample(DEMO_VIDEO_FRAMES, training=True, rng=_item_rng(self.seed, 0, index))
        item = self.videos.get(index, frames=list(clips.unique))
        hr, lr = self.processor.clips_from_frames(item["video"], clips, training=False)
        return {"hr": hr, "lr": lr, "caption": item["caption"], "needs_motion": item["needs_motion"],
                "needs_pattern": item["needs_pattern"]}

    def video_indices(self, m: int) -> list[int]:
        if not self.batch_size:
            return []
        if self.group_size <= 1:
            return self.positions(m, self.batch_size)
        first = self.positions(m, VIDEO_POOL)[0]
        specs = [self.videos.spec(first + i) for i in range(VIDEO_POOL)]
        rng = np.random.default_rng([self.seed, 11, m * self.world_size + self.rank])
        return grouped_indices(specs, first, self.batch_size, self.group_size, VIDEO_GROUP_KEYS, rng)

    def image_indices(self, m: int) -> list[int]:
        if not self.image_batch_size:
            return []
        if self.group_size <= 1:
            return self.positions(m, self.image_batch_size)
        first = self.positions(m, IMAGE_POOL)[0]
        specs = [self.images.spec(first + i) for i in range(IMAGE_POOL)]
        rng = np.random.default_rng([self.seed, 12, m * self.world_size + self.rank])
        return grouped_indices(specs, first, self.image_batch_size, self.group_size, IMAGE_GROUP_KEYS, rng)

    def negative_captions(self, index: int, m: int) -> list[str]:
        """``caption_negatives`` counterfactual captions of image ``index`` (micro-batch ``m``): each the
        image's own caption with one attribute changed to another value (the attributes cycle through
        :data:`NEGATIVE_ATTRIBUTES`, shape twice), so the image-to-text loss must read that attribute
        off the still to tell its caption from them."""
        from hdvila.demo.attributes import ATTRIBUTES

        spec, rng = self.images.spec(index), np.random.default_rng([self.seed, 13, index, m])
        out = []
        for k in range(self.caption_negatives):
            attribute = NEGATIVE_ATTRIBUTES[k % len(NEGATIVE_ATTRIBUTES)]
            others = [v for v in ATTRIBUTES[attribute] if v != getattr(spec, attribute)]
            out.append(self.images.caption(index, **{attribute: others[int(rng.integers(len(others)))]}))
        return out

    def __getitem__(self, m: int) -> dict[str, Any]:
        videos = [self.video_item(p) for p in self.video_indices(m)]
        images = [self.images[p] for p in self.image_indices(m)]
        out = self.processor.tokenize([v["caption"] for v in videos] + [i["caption"] for i in images])
        if videos:  # none in a stills-only phase (batch_size 0)
            out["hr_frames"] = torch.stack([v["hr"] for v in videos])
            out["lr_frames"] = torch.stack([v["lr"] for v in videos])
        if images:
            out["images"] = self.processor.preprocess_images(torch.stack([i["image"] for i in images]))
            if self.caption_negatives:
                negatives = [c for i in images for c in self.negative_captions(i["index"], m)]
                tokens = self.processor.tokenize(negatives)
                out["negative_input_ids"] = tokens["input_ids"]
                out["negative_attention_mask"] = tokens["attention_mask"]
            if self.value_prompts:
                tokens = self.processor.tokenize(value_prompt_texts())
                out["value_input_ids"], out["value_attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
            if self.image_labels:
                out["image_labels"] = torch.stack([i["labels"] for i in images])  # [n, 5], VALUE_ATTRIBUTES order
        out["needs_motion"] = torch.tensor([v["needs_motion"] for v in videos])
        out["needs_pattern"] = torch.tensor([v["needs_pattern"] for v in videos])
        return out


def read_image_rows(path: str | Path) -> list[tuple[Path, str]]:
    """Image-caption rows of a jsonl file (``{"image": path relative to the file, "caption": str}``)."""
    path = Path(path)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputFileError(f"{path}: cannot read the image annotations ({e}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, caption = row["image"], row["caption"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputFileError(f"{path}, line {n}: need a JSON object with 'image' and 'caption'.") from None
        if not isinstance(caption, str) or not caption.strip():
            raise InputFileError(f"{path}, line {n}: empty caption.")
        rows.append((path.parent / image, caption))
    if not rows:
        raise InputFileError(f"{path}: no image rows.")
    return rows


class AnnotationStepBatches(StepBatches):
    """Micro-batches of annotated video files (module docstring). ``videos_dir`` is searched by id like
    ``hdvila eval-retrieval`` does; missing videos raise :class:`InputFileError` listing them."""

    def __init__(self, processor: HDVILAProcessor, annotations: Any, videos_dir: str | Path, batch_size: int,
                 image_rows: Sequence[tuple[Path, str]] = (), image_batch_size: int = 0, **kwargs: Any) -> None:
        from hdvila.retrieval.index import find_videos

        if image_batch_size and not image_rows:
            raise ValueError("image_batch_size > 0 needs image rows (--image_annotations)")
        super().__init__(batch_size, image_batch_size, **kwargs)
        self.processor, self.annotations = processor, annotations
        found, missing = find_videos(videos_dir, annotations.video_ids)
        if missing:
            raise InputFileError(f"{len(missing)} of {len(annotations)} training videos not found in {videos_dir}: "
                                 f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        self.paths = [found[v] for v in annotations.video_ids]
        self.image_rows = list(image_rows)
        self._streams: dict[tuple[int, int], EpochShuffle] = {}

    def _order(self, stream: int, n: int, position: int) -> int:
        """Item index at global ``position`` of stream ``stream`` (0: videos, 1: images) of ``n``
        items, shuffled anew every epoch (:class:`hdvila.training.EpochShuffle`)."""
        order = self._streams.get((stream, n))
        if order is None:
            order = self._streams[(stream, n)] = EpochShuffle(n, self.seed, stream=stream)
        return order[position]

    def __getitem__(self, m: int) -> dict[str, Any]:
        hrs, lrs, captions = [], [], []
        for p in self.positions(m, self.batch_size):
            i = self._order(0, len(self.paths), p)
            rng = _item_rng(self.seed, 0, p)
            hr, lr = self.processor.load_video(self.paths[i], training=True, rng=rng)
            hrs.append(hr)
            lrs.append(lr)
            captions.append(rng.choice(self.annotations.captions[i]))
        image_paths = []
        for p in self.positions(m, self.image_batch_size) if self.image_batch_size else []:
            path, caption = self.image_rows[self._order(1, len(self.image_rows), p)]
            image_paths.append(path)
            captions.append(caption)
        out = self.processor.tokenize(captions)
        out["hr_frames"], out["lr_frames"] = torch.stack(hrs), torch.stack(lrs)
        if image_paths:
            out["images"] = self.processor.preprocess_images([str(p) for p in image_paths])
        return out


# ---- validation / evaluation sets held in memory ------------------------------------------------------
def demo_eval_set(processor: HDVILAProcessor, split: str = "val", num_videos: int = 256, num_images: int = 256, *,
                  wording: str = "train", seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Rendered held-out videos and images with inference sampling (``processor.n_clips`` evenly spread
    clips, centre crop), one caption each, stored as ``dtype`` to keep memory low.

    Returns ``{"hr", "lr", "captions", "needs_motion", "needs_pattern", "images", "image_captions"}``.
    """
    from hdvila.demo.dataset import DemoImageDataset, DemoVideoDataset

    videos = DemoVideoDataset(split, max(num_videos, 1), num_frames=DEMO_VIDEO_FRAMES, seed=seed, wording=wording)
    clips = processor.sample(DEMO_VIDEO_FRAMES, training=False)
    hrs, lrs, captions, motion, pattern = [], [], [], [], []
    for i in range(num_videos):
        item = videos.get(i, frames=list(clips.unique))
        hr, lr = processor.clips_from_frames(item["video"], clips, training=False)
        hrs.append(hr.to(dtype))
        lrs.append(lr.to(dtype))
        captions.append(item["caption"])
        motion.append(item["needs_motion"])
        pattern.append(item["needs_pattern"])
    out: dict[str, Any] = {"hr": torch.stack(hrs) if hrs else None, "lr": torch.stack(lrs) if lrs else None,
                           "captions": captions, "needs_motion": torch.tensor(motion, dtype=torch.bool),
                           "needs_pattern": torch.tensor(pattern, dtype=torch.bool), "images": None,
                           "image_captions": []}
    if num_images:
        images = DemoImageDataset(split, num_images, seed=seed, wording=wording)
        items = [images[i] for i in range(num_images)]
        out["images"] = processor.preprocess_images(torch.stack([it["image"] for it in items])).to(dtype)
        out["image_captions"] = [it["caption"] for it in items]
    return out
