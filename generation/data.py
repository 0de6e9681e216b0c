"""Image data for training and inverting generators.

- :func:`center_crop_resize`: the one geometry rule (largest centred square, then an antialiased
  resize to R x R) used by the trainer's image folders and by ``hdvila invert``.
- :func:`scan_image_folder`: every image under a folder (recursively), each decoded through
  :func:`hdvila.imageio.load_image`; unusable files are collected and reported together *before*
  training starts (or skipped with a warning).
- :func:`render_demo_images`: the demo domain's training images, rendered once (optionally cached
  in a ``.npy`` file, so later runs skip the rendering).
- :class:`UInt8ImageDataset` / :class:`ImageFolderDataset`: map-style datasets whose items are
  float images [3, R, R] in [-1, 1] (the project's tensor convention).

Which indices each training step reads is :class:`hdvila.training.StepBatchSampler`'s business.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hdvila.errors import InputFileError, UserError
from hdvila.imageio import IMAGE_SUFFIXES, list_images, load_image
from hdvila.tensors import uint8_to_unit

MAX_LISTED_BAD = 20


def center_crop_resize(img: Image.Image, resolution: int) -> Image.Image:
    """Crop the largest centred square of an RGB image and resize it to ``resolution`` x ``resolution``
    (Lanczos, antialiased when shrinking; bicubic when enlarging). Returns a new RGB image."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != resolution:
        method = Image.Resampling.LANCZOS if side > resolution else Image.Resampling.BICUBIC
        img = img.resize((resolution, resolution), method)
    return img.convert("RGB")


def pil_to_uint8_chw(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> uint8 array [3, H, W]."""
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, recursively (see :func:`hdvila.imageio.list_images`)."""
    if not Path(folder).is_dir():
        raise InputFileError(f"{folder}: training data folder not found (pass --data demo or a folder of images).")
    return list_images(folder, recursive=True)


def load_training_image(path: str | os.PathLike, resolution: int) -> np.ndarray:
    """Load, centre-crop and resize one image: -> uint8 [3, R, R]. Raises InputFileError."""
    return pil_to_uint8_chw(center_crop_resize(load_image(path), resolution))


def scan_image_folder(folder: str | os.PathLike, resolution: int, *, skip_bad: bool = False,
                      keep_pixels: bool = True, progress: bool = False,
                      skip_hint: str = "pass --skip_bad_images to train without them",
                      ) -> tuple[list[Path], np.ndarray | None]:
    """Decode every image under ``folder`` once and check it.

    Returns ``(good_files, pixels)`` where ``pixels`` is uint8 [N, 3, R, R] (the cropped, resized
    images; ``None`` when ``keep_pixels`` is False). Unusable files (corrupt, truncated, empty, too
    large...) raise one :class:`UserError` listing them all, or with ``skip_bad`` are left out with a
    warning listing them. A folder without any usable image is always an error. ``skip_hint``: how the
    error tells the caller's user to leave them out (the option of the command that is running).
    """
    files = list_image_files(folder)
    if not files:
        raise InputFileError(f"{folder}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)}, recursively).")
    good, pixels, bad = [], [], []
    iterator = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="checking images", unit="img")
    for path in iterator:
        try:
            arr = load_training_image(path, resolution)
        except InputFileError as e:
            bad.append(str(e))
            continue
        good.append(path)
        if keep_pixels:
            pixels.append(arr)
    if bad:
        listing = "\n  ".join(bad[:MAX_LISTED_BAD])
        more = f"\n  ... and {len(bad) - MAX_LISTED_BAD} more" if len(bad) > MAX_LISTED_BAD else ""
        if not skip_bad or not good:
            hint = (f"Remove or fix them, or {skip_hint}."
                    if good else "No usable image is left.")
            raise UserError(f"{len(bad)} of {len(files)} images under {folder} cannot be used:\n"
                            f"  {listing}{more}\n{hint}")
        warnings.warn(f"skipping {len(bad)} of {len(files)} unusable images under {folder}:\n  {listing}{more}",
                      stacklevel=2)
    return good, (np.stack(pixels) if keep_pixels else None)


def render_demo_images(num_images: int, resolution: int, *, seed: int = 0, split: str = "train",
                       start: int = 0, cache_file: str | os.PathLike | None = None, num_workers: int = 0,
                       progress: bool = False) -> np.ndarray:
    """Render images ``start`` .. ``start + num_images - 1`` of the demo domain's ``split`` at
    ``resolution``: uint8 [N, 3, R, R]. With ``cache_file`` (``.npy``, named by the caller for what it
    holds), a matching cache is read instead of rendering, and a fresh render is written there
    (atomically)."""
    from hdvila.atomic import atomic_path
    from hdvila.demo import DemoImageDataset

    expected = (num_images, 3, resolution, resolution)
    if cache_file is not None and Path(cache_file).is_file():
        try:
            arr = np.load(cache_file, allow_pickle=False)
            if arr.shape == expected and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass  # damaged or foreign cache: render again
    ds = DemoImageDataset(split, start + num_images, resolution=resolution, seed=seed)
    loader = torch.utils.data.DataLoader(_DemoUInt8(ds, start), batch_size=64, num_workers=num_workers)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"rendering {num_images} demo images", unit="batch")
    arr = np.concatenate([b.numpy() for b in loader]) if num_images else np.zeros(expected, np.uint8)
    if cache_file is not None:
        with atomic_path(cache_file) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
    return arr


class _DemoUInt8(Dataset):
    """Items ``start``.. of a demo dataset as uint8 [3, R, R]."""

    def __init__(self, ds, start: int = 0):
        self.ds, self.start = ds, start

    def __len__(self) -> int:
        return len(self.ds) - self.start

    def __getitem__(self, index: int) -> torch.Tensor:
        return ((self.ds[self.start + index]["image"].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class UInt8ImageDataset(Dataset):
    """Images held in memory as uint8 [N, 3, R, R]; item ``i`` -> float32 [3, R, R] in [-1, 1]."""

    def __init__(self, pixels: np.ndarray | torch.Tensor):
        pixels = torch.as_tensor(pixels)
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be uint8 [N, 3, R, R], got {pixels.dtype} {tuple(pixels.shape)}")
        self.pixels = pixels

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return uint8_to_unit(self.pixels[index])

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """Several items at once (no DataLoader needed): float32 [len(indices), 3, R, R]."""
        return uint8_to_unit(self.pixels[torch.as_tensor(list(indices), dtype=torch.long)])


class ImageFolderDataset(Dataset):
    """Images read from disk on every access (for folders too large to hold in memory).

    ``files`` should come from :func:`scan_image_folder` (already checked). Item -> float32
    [3, R, R] in [-1, 1]; a file that became unreadable since the scan raises InputFileError.
    """

    def __init__(self, files: Sequence[str | os.PathLike], resolution: int):
        self.files, self.resolution = [Path(f) for f in files], resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return uint8_to_unit(torch.from_numpy(load_training_image(self.files[index], self.resolution)))
