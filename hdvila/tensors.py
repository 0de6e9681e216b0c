"""Tensor conventions, in one place.

Inside models, images are float tensors NCHW (or CHW) with values in [-1, 1], RGB. Everything that
crosses into or out of that convention goes through these functions.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> float tensor [3, H, W] in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return uint8_to_unit(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def uint8_to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 valued) tensor, any shape -> float32 in [-1, 1]."""
    return x.to(torch.float32) / 127.5 - 1.0


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float tensor in [-1, 1], any shape -> uint8 in [0, 255] (clamped, rounded)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def to_pil(image) -> Image.Image:
    """``PIL.Image``, uint8 HxWx3 array, or float tensor [3,H,W] / [1,3,H,W] in [-1, 1] -> RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"numpy images must be uint8 HxWx3, got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    if isinstance(image, torch.Tensor):
        t = image
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensors must be [3,H,W] or [1,3,H,W], got {tuple(image.shape)}")
        return Image.fromarray(unit_to_uint8(t).permute(1, 2, 0).cpu().numpy())
    raise TypeError(f"cannot convert {type(image).__name__} to an image")


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> one grid image [3, H', W'] in [-1, 1] (padding is -1, black)."""
    n, c, h, w = images.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    grid = images.new_full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), -1.0)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top: top + h, left: left + w] = images[i]
    return grid


def labelled_grid(images: torch.Tensor, labels: list[str], nrow: int, scale: int = 2, pad: int = 2) -> Image.Image:
    """[N, 3, H, W] in [-1, 1] and one label per image -> an RGB ``PIL.Image`` grid: each tile upscaled
    ``scale`` times (nearest neighbour, pixels stay visible) with its label in a strip beneath,
    word-wrapped to the tile's width (PIL's built-in bitmap font, no font files needed)."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    font = ImageFont.load_default()
    tiles = torch.nn.functional.interpolate(images.float(), scale_factor=scale, mode="nearest")
    _, _, h, w = tiles.shape
    char_w, line_h = max(font.getbbox("M")[2], 1), font.getbbox("Mg")[3] + 2
    wrapped = [textwrap.wrap(t, max(w // char_w, 1)) or [""] for t in labels]
    strip = max(len(lines) for lines in wrapped) * line_h + 4
    rows = int(np.ceil(len(images) / nrow))
    canvas = Image.new("RGB", (nrow * (w + pad) + pad, rows * (h + strip + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (tile, lines) in enumerate(zip(tiles, wrapped)):
        r, c = divmod(i, nrow)
        x0, y0 = pad + c * (w + pad), pad + r * (h + strip + pad)
        canvas.paste(to_pil(tile), (x0, y0))
        for k, line in enumerate(lines):
            draw.text((x0 + 2, y0 + h + 2 + k * line_h), line, fill=(0, 0, 0), font=font)
    return canvas
