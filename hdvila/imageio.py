"""Image input and output: the one place where files become RGB images and back.

Input policy (:func:`load_image`):
- sources: a path, raw bytes, a ``PIL.Image`` or a numpy array (HxW, HxWx1/3/4; uint8, uint16, or
  float in [0, 1]);
- EXIF orientation is applied, so an image looks as a photo viewer shows it;
- every mode becomes RGB: L/I/I;16/F are greyscale (16-bit scaled by 1/257), P is expanded through
  its palette, CMYK/YCbCr/LAB converted by PIL;
- **alpha** (RGBA, LA, P with transparency) is composited over a white background (configurable),
  which is how browsers and viewers show transparent pixels on a page;
- limits: at most ``max_pixels`` pixels (default 40 MP) checked from the header before decoding, so
  a decompression bomb is refused without allocating it;
- empty, missing, truncated, corrupt or non-image files raise :class:`InputFileError` naming the
  file and the problem.

Output (:func:`save_image`): PNG by default, JPEG on request, always written atomically.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hdvila.atomic import atomic_path
from hdvila.errors import InputFileError, UserError

DEFAULT_MAX_PIXELS = 40_000_000
ALPHA_BACKGROUND = (255, 255, 255)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")

_PIL_LIMIT_LOCK = threading.Lock()

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]


def _describe(src: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def load_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               alpha_background: tuple[int, int, int] = ALPHA_BACKGROUND, name: str | None = None) -> Image.Image:
    """Load ``src`` as an RGB ``PIL.Image`` under the policy in the module docstring.

    Raises :class:`InputFileError` with a message naming the source for anything unusable.
    """
    label = _describe(src, name)
    if isinstance(src, Image.Image):
        img = src
        img.load()
    elif isinstance(src, np.ndarray):
        img = _from_array(src, label)
    else:
        img = _open(src, label, max_pixels)
    _check_size(img.size, label, max_pixels)
    out = to_rgb(img, alpha_background)
    if img.info.get("animation_frames", 1) > 1:  # an animation's first frame: callers can say so (animation_note)
        out.info["animation_frames"] = img.info["animation_frames"]
    return out


def animation_note(img: Image.Image) -> str:
    """For an image :func:`load_image` read from an animation: that only its first frame is used; else ""."""
    frames = img.info.get("animation_frames", 1)
    return f"an animation of {frames} frames: only its first frame is used" if frames > 1 else ""


def _open(src: str | os.PathLike | bytes | bytearray, label: str, max_pixels: int) -> Image.Image:
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        path = Path(src)
        if not path.exists():
            raise InputFileError(f"{label}: file not found.")
        if path.is_dir():
            raise InputFileError(f"{label}: is a folder, not an image file.")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputFileError(f"{label}: cannot be read ({e.strerror or e}).") from None
    if not data:
        raise InputFileError(f"{label}: file is empty (0 bytes); it is not an image.")
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            # PIL's own bomb check fires inside open(); ours (with the size in the message) replaces
            # it for this header-only call and runs before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        _check_size(img.size, label, max_pixels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            frames = getattr(img, "n_frames", 1)  # an animation: its first frame is what is read
            img = ImageOps.exif_transpose(img)
            if frames > 1:
                img.info["animation_frames"] = frames
    except UserError:
        raise
    except UnidentifiedImageError:
        raise InputFileError(f"{label}: not a recognised image file (supported: PNG, JPEG, BMP, WebP, TIFF, "
                             f"GIF). The file may be corrupt or of another type.") from None
    except Image.DecompressionBombError:
        raise InputFileError(f"{label}: image is too large to decode safely.") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower() or "broken data stream" in msg or "unrecognized data stream" in msg:
            raise InputFileError(f"{label}: image file is truncated or its data is corrupt; re-export or "
                                 f"re-download it.") from None
        raise InputFileError(f"{label}: image data is corrupt ({msg}).") from None
    return img


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise InputFileError(f"{label}: image has no pixels ({w}x{h}).")
    if w * h > max_pixels:
        raise InputFileError(f"{label}: image is {w}x{h} = {w * h:,} pixels, above the limit of "
                             f"{max_pixels:,}. Downscale it to at most {max_pixels:,} pixels first (library users "
                             f"who trust the file: hdvila.imageio.load_image(..., max_pixels=N)).")


def _from_array(arr: np.ndarray, label: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputFileError(f"{label}: array of shape {arr.shape} is not an image; expected HxW, HxWx1, "
                             f"HxWx3 or HxWx4.")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputFileError(f"{label}: float image contains NaN or infinity.")
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    else:
        raise InputFileError(f"{label}: unsupported array dtype {arr.dtype}; use uint8, uint16 or float in [0, 1].")
    return Image.fromarray(np.ascontiguousarray(arr))


def to_rgb(img: Image.Image, alpha_background: tuple[int, int, int] = ALPHA_BACKGROUND) -> Image.Image:
    """Convert any PIL mode to RGB; alpha is composited over ``alpha_background``."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if (img.mode.startswith("I;16") or arr.max(initial=0) > 255) else 1.0
        arr = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, alpha_background)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (by suffix, sorted; hidden files and folders, such as our atomic
    writers' temporary files, skipped); ``recursive`` descends into sub-folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: folder not found.")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found.extend(Path(root) / n for n in names
                     if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES
                     and (Path(root) / n).is_file())
    return sorted(found)


def save_image(image, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Save ``image`` atomically; the format follows the suffix (``.png`` lossless, ``.jpg``/``.jpeg``).

    ``image``: a ``PIL.Image``, a uint8 HxWx3 array, or a float tensor [3,H,W] / [1,3,H,W] in [-1, 1].
    Returns the path written.
    """
    from hdvila.tensors import to_pil  # torch import deferred: PIL-only callers stay light

    path = Path(path)
    suffix = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
    if suffix not in formats:
        raise UserError(f"{path}: output must end in .png, .jpg or .jpeg (got {suffix or 'no suffix'}).")
    pil = to_pil(image)
    with atomic_path(path) as tmp:
        kwargs = {"quality": quality, "subsampling": 0} if formats[suffix] == "JPEG" else {"compress_level": 6}
        pil.save(tmp, format=formats[suffix], **kwargs)
    return path
