"""Video input and output: the one place where video files and frame folders become frames and back.

Reading (:func:`open_video`): a video file is opened with decord, which seeks, so HD-VILA's sparse
sampling decodes only the sampled frames (one ``get_batch``); :func:`read_all_frames` decodes a whole
file in order with PyAV, the faster of the two for a full pass. A *frame folder* (one video stored
as numbered images, see :func:`frame_folder_files`) and an in-memory tensor [T, 3, H, W] read the
same way. Every problem a user can fix raises :class:`~hdvila.errors.InputFileError` naming the
file: not found, empty, not a video, no video stream (an audio-only file), truncated or corrupt.
The decoders' own log lines (FFmpeg's ``moov atom not found``, decord's ``Check failed: ...``) are
kept off the terminal; their gist goes into that message instead.

Writing (:func:`write_video`): mp4 (H.264, yuv420p) through PyAV, written atomically.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch

from hdvila.atomic import atomic_path
from hdvila.errors import InputFileError
from hdvila.tensors import unit_to_uint8

VideoSource = Union[str, os.PathLike, torch.Tensor]

# Name stems a frame folder's images may carry before their number when the folder is *found* (not
# named by the user): nothing (00001.png), a frame word (frame_0001.jpg, img_00001.jpg as FFmpeg's
# ``-f image2`` examples and many action-recognition datasets write them), or the folder's own name.
FRAME_WORDS = ("", "frame", "frames", "frm", "img", "image", "im", "f")
SIZE_SAMPLES = 8  # frames whose header is read to check that a found folder has one image size
_NUMBERED = re.compile(r"^(.*?)(\d+)$")
_SEPARATORS = "_-. "


# ---- quiet decoders --------------------------------------------------------------------------------
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_fd: int | None = None


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 (FFmpeg and dmlc log lines) to /dev/null.

    decord logs an error line (``[12:00:00] .../video_reader.cc:83: ERROR opening ...``) before it
    raises, from C++, where Python's ``sys.stderr`` cannot catch it. Nested and threaded uses share
    one redirect: it is restored when the last one leaves. Python's own ``sys.stderr`` is flushed
    first, so nothing already printed is lost.
    """
    global _quiet_depth, _saved_fd
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                saved = None  # no fd 2 (e.g. a GUI process): nothing to silence
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _saved_fd = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


def _decord():
    """decord, with FFmpeg's log level set to quiet (once; it is process-wide)."""
    import decord

    if not getattr(_decord, "quiet", False):
        decord.logging.set_level(decord.logging.QUIET)
        _decord.quiet = True
    return decord


def _short(e: BaseException) -> str:
    """The gist of a decoder error: its first line without decord's ``[time] file.cc:N:`` prefix, and
    without the file name PyAV appends (the message that quotes it names the file already)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    text = re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text)
    name = getattr(e, "filename", None)
    if name:
        text = text.replace(f": {str(name)!r}", "")
    return text[:200]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: video not found.")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a video file.")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: the file is empty (0 bytes).")


def _no_video_stream(path: Path) -> InputFileError:
    return InputFileError(f"{path}: the file has no video stream (an audio-only or data file?); pass a video file.")


# ---- frame folders ---------------------------------------------------------------------------------
def frame_folder_files(folder: str | os.PathLike, *, names: Sequence[str] | None = None,
                       strict: bool = False) -> list[Path]:
    """The frames of a frame folder, in order; :class:`InputFileError` saying why it is not one.

    A frame folder holds one video as numbered images with one name stem and consecutive numbers
    from any start (``00001.png, 00002.png, ...`` or ``frame_0001.jpg, ...``); unnumbered images
    and other files beside them are ignored. ``strict`` (used when folders are *found* below a
    video folder rather than named by the user) also asks that the stem be a frame word
    (:data:`FRAME_WORDS`) or the folder's name, and that the images have one size (checked on the
    headers of up to :data:`SIZE_SAMPLES` spread frames), so a folder of unrelated numbered images,
    such as an exported ``images/demo_test_img_00000.png ...``, is not taken for a video.
    ``names``: the folder's entries, when the caller has listed it already.
    """
    from hdvila.imageio import IMAGE_SUFFIXES

    folder = Path(folder)
    if names is None:
        names = os.listdir(folder)
    numbered: dict[int, list[str]] = {}
    stems = set()
    for name in sorted(names):
        stem, ext = os.path.splitext(name)
        m = _NUMBERED.match(stem)
        if name.startswith(".") or ext.lower() not in IMAGE_SUFFIXES or not m:
            continue
        stems.add(m.group(1))
        numbered.setdefault(int(m.group(2)), []).append(name)
    if not numbered:
        raise InputFileError(f"{folder}: no numbered image frames (e.g. 0001.jpg) in the folder.")
    if len(stems) > 1:
        raise InputFileError(f"{folder}: frames with different name prefixes {sorted(stems)}; keep one "
                             f"video's frames per folder.")
    numbers = sorted(numbered)
    for n in numbers:
        if len(numbered[n]) > 1:
            raise InputFileError(f"{folder}: {' and '.join(numbered[n])} are both frame {n}; keep one.")
    for a, b in zip(numbers, numbers[1:]):
        if b != a + 1:
            raise InputFileError(f"{folder}: frame {a + 1} is missing (the numbering jumps from "
                                 f"{numbered[a][0]} to {numbered[b][0]}).")
    files = [folder / numbered[n][0] for n in numbers]
    if strict:
        stem = stems.pop().rstrip(_SEPARATORS).lower()
        if stem not in FRAME_WORDS and stem != folder.name.lower().rstrip(_SEPARATORS):
            raise InputFileError(f"{folder}: images named like {files[0].name} are not the frames of one video "
                                 f"(frames are named 00001.png, frame_0001.jpg or {folder.name}_0001.jpg).")
        sizes = _header_sizes(files)
        if len(sizes) > 1:
            raise InputFileError(f"{folder}: the images have different sizes ({', '.join(sorted(sizes))}), so "
                                 f"they are not the frames of one video.")
    return files


def _header_sizes(files: list[Path]) -> set[str]:
    """The distinct ``WxH`` of up to SIZE_SAMPLES spread files (headers only; unreadable ones are left
    to the decoder, which names them when the frames are read)."""
    from PIL import Image

    step = max(1, (len(files) - 1) // (SIZE_SAMPLES - 1))
    picks = sorted(set(files[::step][:SIZE_SAMPLES - 1] + [files[-1]]))
    sizes = set()
    for p in picks:
        try:
            with Image.open(p) as im:
                sizes.add(f"{im.size[0]}x{im.size[1]}")
        except Exception:  # not an image after all: reported by the reader, not here
            continue
    return sizes


# ---- readers ---------------------------------------------------------------------------------------
class TensorVideo:
    """An in-memory video [T, 3, H, W] (uint8, or float in [-1, 1])."""

    def __init__(self, frames: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise InputFileError(f"In-memory videos must be [T, 3, H, W], got {tuple(frames.shape)}.")
        self.frames, self.total_frames = frames, frames.shape[0]
        self.label = f"<video tensor of {self.total_frames} frames>"

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames ``indices`` -> [K, 3, H, W] in the tensor's dtype."""
        return self.frames[indices]


class DecordVideo:
    """A video file read through decord (seeking reads of sparse frames)."""

    def __init__(self, path: Path) -> None:
        decord = _decord()
        self.label = str(path)
        try:
            with quiet_native_stderr():
                self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
            self.total_frames = len(self.reader)
        except Exception as e:  # decord raises its own error types for unreadable containers
            if "cannot find video stream" in str(e):
                raise _no_video_stream(path) from None
            raise InputFileError(f"{path}: cannot decode the video ({_short(e)}); the file is corrupt, truncated "
                                 f"or not a video.") from None
        if self.total_frames == 0:
            raise InputFileError(f"{path}: the video has no frames.")

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames ``indices`` -> uint8 [K, 3, H, W], in one ``get_batch``."""
        try:
            with quiet_native_stderr():
                batch = self.reader.get_batch(indices).asnumpy()  # [K, H, W, 3] uint8
        except Exception as e:
            raise InputFileError(f"{self.label}: decoding frames {indices[:3]}... failed ({_short(e)}); the file "
                                 f"is probably truncated or corrupt.") from None
        return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)


class FrameFolder:
    """A frame folder (:func:`frame_folder_files`), read image by image."""

    def __init__(self, folder: Path, strict: bool = False) -> None:
        self.label = str(folder)
        self.files = frame_folder_files(folder, strict=strict)
        self.total_frames = len(self.files)

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames ``indices`` -> uint8 [K, 3, H, W]; frames of different sizes are an error."""
        from hdvila.imageio import load_image

        arrays = [np.asarray(load_image(self.files[i])) for i in indices]
        if len({a.shape for a in arrays}) > 1:
            raise InputFileError(f"{self.label}: frames have different sizes "
                                 f"({sorted({a.shape[:2] for a in arrays})}).")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def open_video(source: VideoSource) -> TensorVideo | DecordVideo | FrameFolder:
    """A reader for a video file, a frame folder or a tensor [T, 3, H, W]: ``.label`` (for messages),
    ``.total_frames`` and ``.read(indices) -> [K, 3, H, W]`` (uint8 from files)."""
    if isinstance(source, torch.Tensor):
        return TensorVideo(source)
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path}: video not found.")
    if path.is_dir():
        return FrameFolder(path)
    _check_file(path)
    return DecordVideo(path)


def read_all_frames(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Every frame of a video file in order (at most ``max_frames``), decoded with PyAV.

    Returns (uint8 array [T, H, W, 3], frames per second). A file that stops decoding part-way is an
    error, not a shorter video, so no caller writes a partial output from it.
    """
    import av

    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputFileError(f"{path}: cannot decode the video ({_short(e)}); the file is corrupt, truncated "
                             f"or not a video.") from None
    frames: list[np.ndarray] = []
    with container:
        if not container.streams.video:
            raise _no_video_stream(path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 25.0  # FFmpeg's own default when a stream states no rate
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputFileError(f"{path}: decoding stopped after {len(frames)} frame(s) ({_short(e)}); the file "
                                 f"is truncated or corrupt.") from None
    if not frames:
        h, w = stream.codec_context.height or 0, stream.codec_context.width or 0
        return np.zeros((0, h, w, 3), np.uint8), fps
    return np.stack(frames), fps


def read_video_checked(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """:func:`read_all_frames` for a command that processes a whole video: a video with no frames,
    or with more than ``max_frames``, is refused (:class:`InputFileError`) rather than cut short."""
    frames, fps = read_all_frames(path, max_frames=None if max_frames is None else max_frames + 1)
    if len(frames) == 0:
        raise InputFileError(f"{path}: the video has no frames.")
    if max_frames is not None and len(frames) > max_frames:
        raise InputFileError(f"{path}: the video is longer than the limit of {max_frames} frames; cut it "
                             f"shorter (or raise the limit where the command offers one).")
    return frames, fps


# ---- writing ---------------------------------------------------------------------------------------
def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray, fps: float = 8.0, crf: int = 12) -> Path:
    """Write ``frames`` to an .mp4 atomically and return the path.

    ``frames``: float tensor [T, 3, H, W] in [-1, 1], or uint8 array [T, H, W, 3]. H and W must be
    even (yuv420p). ``crf`` 12 keeps the demo domain's 4-pixel patterns intact.
    """
    import av

    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
        frames = unit_to_uint8(frames).permute(0, 2, 3, 1).cpu().numpy()
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0 or h % 2 or w % 2:
        raise ValueError(f"need at least one frame with even height and width, got {frames.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
    return path


__all__ = ["FRAME_WORDS", "DecordVideo", "FrameFolder", "TensorVideo", "VideoSource", "frame_folder_files",
           "open_video", "quiet_native_stderr", "read_all_frames", "write_video"]
