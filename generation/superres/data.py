"""Training and evaluation data for text-conditioned super-resolution: HR images with captions and
the captions' HD-VILA text embeddings, held in memory.

Sources:
- the demo domain (``--data demo``): renders of the ``train`` split (or ``test`` for evaluation)
  with their generated captions;
- a captions file: HD-VILA images jsonl (``{"image": path relative to the file, "caption": str}``
  per line) or a CSV with ``image`` (or ``path``/``file``) and ``caption`` (or ``text``) columns.
  A missing or empty caption is an error naming its line; images are centre-cropped to a square and
  resized to the model's output resolution.

Text embeddings are computed once with the frozen HD-VILA text tower and cached as a ``.npz`` keyed
by the captions and the HD-VILA folder (``cache_dir``), since the tower is frozen during SR training.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hdvila.errors import InputFileError

IMAGE_COLUMNS = ("image", "path", "file")
CAPTION_COLUMNS = ("caption", "text")


@dataclass
class CaptionedImages:
    """``images`` uint8 [N, 3, R, R]; ``captions`` N strings; ``text_embeds`` float32 [N, D] or None;
    ``labels`` long [N, 5] (demo-domain attributes, for evaluation only) or None."""

    images: np.ndarray
    captions: list[str]
    text_embeds: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.captions)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """hr float32 [B, 3, R, R] in [-1, 1], text [B, D] (when embedded), index [B]."""
        idx = np.asarray(indices)
        out = {"hr": torch.from_numpy(self.images[idx]).float() / 127.5 - 1, "index": torch.as_tensor(idx)}
        if self.text_embeds is not None:
            out["text"] = self.text_embeds[torch.as_tensor(idx)]
        return out


def demo_captioned_images(num: int, resolution: int, *, split: str = "train", seed: int = 0, start: int = 0,
                          wording: str = "train") -> CaptionedImages:
    """Demo renders ``start .. start+num-1`` of ``split`` with captions and attribute labels."""
    from generation.data import render_demo_images
    from hdvila.demo import DemoImageDataset
    from hdvila.demo.captions import caption_image
    from hdvila.demo.dataset import caption_rng

    ds = DemoImageDataset(split, start + num, resolution=resolution, seed=seed, wording=wording)
    images = render_demo_images(num, resolution, seed=seed, split=split, start=start)
    captions, labels = [], []
    for i in range(start, start + num):
        spec = ds.spec(i)
        captions.append(caption_image(spec, caption_rng(split, seed, i, False, wording), wording))
        lab = spec.labels()
        labels.append([lab[k] for k in ("shape", "color", "background", "size", "pattern")])
    return CaptionedImages(images, captions, labels=torch.tensor(labels, dtype=torch.long))


def read_caption_rows(path: str | Path) -> list[tuple[Path, str]]:
    """(image path, caption) rows of a jsonl or CSV captions file; paths relative to the file.
    Raises :class:`InputFileError` naming the line of a missing or empty caption."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json"):
        from hdvila.data import read_image_rows

        return read_image_rows(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path}: cannot read the captions file ({e}).") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    img_col = next((c for c in IMAGE_COLUMNS if c in fields), None)
    cap_col = next((c for c in CAPTION_COLUMNS if c in fields), None)
    if img_col is None or cap_col is None:
        raise InputFileError(f"{path}: a captions CSV needs an image column ({'/'.join(IMAGE_COLUMNS)}) and a caption "
                             f"column ({'/'.join(CAPTION_COLUMNS)}); found {fields or 'no header'}.")
    rows = []
    for n, row in enumerate(reader, 2):
        row = {k.strip().lower(): (v or "") for k, v in row.items() if k}
        if not row.get(img_col, "").strip():
            raise InputFileError(f"{path}, line {n}: no image path.")
        caption = row.get(cap_col, "").strip()
        if not caption:
            raise InputFileError(f"{path}, line {n}: missing or empty caption for {row[img_col].strip()}.")
        rows.append((path.parent / row[img_col].strip(), caption))
    if not rows:
        raise InputFileError(f"{path}: no caption rows.")
    return rows


def folder_captioned_images(captions_file: str | Path, resolution: int, *, progress: bool = True) -> CaptionedImages:
    """Every image of a captions file, decoded, centre-cropped and resized to ``resolution``."""
    from generation.data import load_training_image

    rows = read_caption_rows(captions_file)
    pixels, bad = [], []
    iterator = rows
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(rows, desc="loading images", unit="img")
    for image, _ in iterator:
        try:
            pixels.append(load_training_image(image, resolution))
        except InputFileError as e:
            bad.append(str(e))
    if bad:
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise InputFileError(f"{len(bad)} of {len(rows)} images in {captions_file} cannot be used:\n  "
                             + "\n  ".join(bad[:10]) + more + "\nFix or remove those lines.")
    return CaptionedImages(np.stack(pixels), [c for _, c in rows])


def hdvila_digest(model_dir: str | Path) -> str:
    """A short digest of an HD-VILA model folder's weights file (size and first/last MiB)."""
    from hdvila.modeling_utils import WEIGHTS_NAME

    f = Path(model_dir) / WEIGHTS_NAME
    h = hashlib.sha256(str(f.stat().st_size).encode())
    with open(f, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, f.stat().st_size - (1 << 20)))
        h.update(fh.read())
    return h.hexdigest()[:16]


def embed_captions(data: CaptionedImages, hdvila, processor, *, model_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, batch_size: int = 256) -> CaptionedImages:
    """Fill ``data.text_embeds`` with HD-VILA text embeddings [N, D] (float32), from the cache when
    the same captions were embedded by the same model before."""
    from hdvila.atomic import atomic_path
    from hdvila.retrieval.index import encode_texts

    cache = None
    if cache_dir is not None and model_dir is not None:
        key = hashlib.sha256(("\n".join(data.captions) + hdvila_digest(model_dir)).encode()).hexdigest()[:20]
        cache = Path(cache_dir) / f"text-embeds-{key}.npz"
        if cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    data.text_embeds = torch.from_numpy(z["embeds"].astype(np.float32))
                if data.text_embeds.shape[0] == len(data):
                    return data
            except (OSError, ValueError, KeyError):
                pass  # damaged cache: embed again
    embeds, _ = encode_texts(hdvila, processor, data.captions, batch_size=batch_size, progress=True)
    data.text_embeds = embeds.float()
    if cache is not None:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, embeds=embeds.numpy().astype(np.float32))  # fp32: a resumed run sees the same values
    return data
