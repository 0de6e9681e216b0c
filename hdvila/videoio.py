"""Video input and output: the one place where video files and frame folders become frames and back.

Reading (:func:`open_video`): a video file is opened with decord, which seeks, so HD-VILA's sparse
sampling decodes only the sampled frames (one ``get_batch``); :func:`read_all_frames` decodes a whole
file in order with PyAV, the faster of the two for a full pass. A *frame folder* (one video stored
as numbered images, see :func:`frame_folder_files`) and an in-memory tensor [T, 3, H, W] read the
same way. Every problem a user can fix raises :class:`~hdvila.errors.InputFileError` naming the
file: not found, empty, not a video, no video stream (an audio-only file), truncated or corrupt.
The decoders' own log lines (FFmpeg's ``moov atom not found``, decord's ``Check failed: ...``) are
kept off the terminal; their gist goes into that message instead. A file that decodes cleanly to far
fewer frames than its container declares (cut off mid-download) is read with a one-line note
(:func:`shortfall_note`), since containers often misreport by a frame or two.

Writing (:func:`write_video`): mp4 (H.264, yuv420p) through PyAV, written atomically; ``audio_from``
carries a source's audio track over (copied, or re-encoded to AAC), trimmed to the frames written.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings
from contextlib import ExitStack, contextmanager
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


#: A decoded video shorter than this share of the frames its container declares (and at least
#: :data:`SHORTFALL_MIN_FRAMES` short) gets a note: containers misreport by a frame or two, not by a tenth.
SHORTFALL_RATIO = 0.9
SHORTFALL_MIN_FRAMES = 2


class TruncatedVideoWarning(UserWarning):
    """A video decoded to far fewer frames than its container declares (:func:`read_all_frames`), warned
    only when the caller does not collect the note itself."""


def _declared_frames(container, stream) -> int | None:
    """The frame count ``stream`` declares: its ``nb_frames``, else its (or the container's) duration
    times its frame rate; None when it declares neither."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return None
    if stream.duration and stream.time_base:
        seconds = stream.duration * stream.time_base
    elif container.duration and not container.streams.audio:  # with audio, it may be the sound's length
        seconds = Fraction(container.duration, 1_000_000)  # AV_TIME_BASE
    else:
        return None
    return round(seconds * rate) or None


def shortfall_note(label: str, decoded: int, declared: int | None) -> str | None:
    """A one-line note when ``decoded`` frames fall well short of the ``declared`` count (below
    :data:`SHORTFALL_RATIO` of it and at least :data:`SHORTFALL_MIN_FRAMES` short), else None."""
    if not declared or declared - decoded < SHORTFALL_MIN_FRAMES or decoded >= SHORTFALL_RATIO * declared:
        return None
    return (f"{label}: decoded {decoded} of {declared} declared frames; the file may be truncated (re-download or "
            f"re-export it to get the whole video).")


def read_all_frames(path: str | os.PathLike, max_frames: int | None = None,
                    notes: list[str] | None = None) -> tuple[np.ndarray, float]:
    """Every frame of a video file in order (at most ``max_frames``), decoded with PyAV.

    Returns (uint8 array [T, H, W, 3], frames per second). A file that stops decoding part-way with a
    decoder error is an error, not a shorter video, so no caller writes a partial output from it. A
    file that ends cleanly but well short of the frames its container declares (a download or copy cut
    off: :func:`shortfall_note`) is read, and its one-line note is appended to ``notes``; with
    ``notes`` None it is warned instead (:class:`TruncatedVideoWarning`). A read stopped by
    ``max_frames`` is not judged.
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
        declared = _declared_frames(container, stream)
        stopped = False
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    stopped = True
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InputFileError(f"{path}: decoding stopped after {len(frames)} frame(s) ({_short(e)}); the file "
                                 f"is truncated or corrupt.") from None
    note = None if stopped else shortfall_note(str(path), len(frames), declared)
    if note is not None:
        if notes is not None:
            notes.append(note)
        else:
            warnings.warn(note, TruncatedVideoWarning, stacklevel=2)
    if not frames:
        h, w = stream.codec_context.height or 0, stream.codec_context.width or 0
        return np.zeros((0, h, w, 3), np.uint8), fps
    return np.stack(frames), fps


def read_video_checked(path: str | os.PathLike, max_frames: int | None = None,
                       notes: list[str] | None = None) -> tuple[np.ndarray, float]:
    """:func:`read_all_frames` for a command that processes a whole video: a video with no frames,
    or with more than ``max_frames``, is refused (:class:`InputFileError`) rather than cut short.
    ``notes``: as for :func:`read_all_frames` (a truncated file's note)."""
    frames, fps = read_all_frames(path, max_frames=None if max_frames is None else max_frames + 1, notes=notes)
    if len(frames) == 0:
        raise InputFileError(f"{path}: the video has no frames.")
    if max_frames is not None and len(frames) > max_frames:
        raise InputFileError(f"{path}: the video is longer than the limit of {max_frames} frames; cut it "
                             f"shorter (or raise the limit where the command offers one).")
    return frames, fps


# ---- writing ---------------------------------------------------------------------------------------
AUDIO_BITRATE = 160_000  # bit/s of the AAC track when a source's audio has to be re-encoded
#: Audio codecs copied into the mp4 as they are (mp4 holds them and common players play them); others
#: (PCM, which recent FFmpeg also puts in mp4 but browsers do not play, Vorbis, ...) are re-encoded.
COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})


def write_video(path: str | os.PathLike, frames: torch.Tensor | np.ndarray, fps: float = 8.0, crf: int = 12,
                audio_from: str | os.PathLike | None = None) -> Path:
    """Write ``frames`` to an .mp4 atomically and return the path.

    ``frames``: float tensor [T, 3, H, W] in [-1, 1], or uint8 array [T, H, W, 3]. H and W must be
    even (yuv420p). ``crf`` 12 keeps the demo domain's 4-pixel patterns intact.

    ``audio_from``: a file (normally the video the frames were read from) whose first audio stream is
    carried into the output, in sync with the frames (time 0 is the source's first video frame):

    * copied packet for packet, not re-encoded, when its codec is one that mp4 holds and players play
      (:data:`COPY_AUDIO_CODECS`: AAC, MP3, Opus, FLAC, ALAC, AC-3, E-AC-3); otherwise (PCM, Vorbis...),
      or if the copy fails, re-encoded to AAC (:data:`AUDIO_BITRATE`; mono stays mono, more channels
      become stereo; the source's sample rate where AAC has it, else 48 kHz);
    * trimmed to the video's duration, ``T / fps``, so a clip cut short (``max_frames``, the web UI's
      first frames) keeps just its own stretch of sound; audio longer than the source's video is cut
      the same way. A copied track is cut at a packet and its last packet's duration shortened, which
      players honour (an mp4 edit list); a re-encoded one is cut at the sample. Audio before the
      source's first video frame is dropped, a late start stays late.
    * ``None``, a folder (a frame folder), a file without an audio stream or one PyAV cannot open:
      the video is written without audio, no error. If the audio can be neither copied nor
      re-encoded (a corrupt track), the video is written without it and a warning says so.
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
    modes = ("copy", "aac", None) if _has_audio(audio_from) else (None,)
    for mode in modes:
        try:
            with atomic_path(path) as tmp:  # a failed try leaves nothing behind; the next one starts afresh
                _write_mp4(tmp, frames, Fraction(fps).limit_denominator(1001), crf, audio_from, mode)
            return path
        except (av.FFmpegError, ValueError) as e:
            if mode is None or isinstance(e, OSError):  # a write error (disk full...) is not the audio's fault
                raise
            if mode == "aac":
                warnings.warn(f"{path}: written without the audio of {audio_from}, which could not be copied or "
                              f"re-encoded ({_short(e)}).", stacklevel=2)
    return path


def _has_audio(source: str | os.PathLike | None) -> bool:
    """Whether ``source`` is a file that PyAV opens and that has an audio stream."""
    import av

    if source is None or not Path(source).is_file():
        return False
    try:
        with av.open(str(source)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError):
        return False


def _write_mp4(tmp: Path, frames: np.ndarray, rate: Fraction, crf: int, audio_from, mode: str | None) -> None:
    """Encode ``frames`` at ``rate`` frames/s into the mp4 ``tmp``; with ``mode`` "copy" or "aac", the
    audio of ``audio_from`` too (see :func:`write_video`), muxed as the video advances."""
    import av

    t, h, w, _ = frames.shape
    with ExitStack() as stack:
        container = stack.enter_context(av.open(str(tmp), mode="w", format="mp4"))
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        audio: Iterator[tuple[Fraction, object]] = iter(())
        if mode is not None:
            source = stack.enter_context(av.open(str(audio_from)))
            audio = _audio_packets(source, container, mode, Fraction(t) / rate)
        pending = next(audio, None)
        for i, frame in enumerate(frames):
            while pending is not None and pending[0] < (i + 1) / rate:  # interleave: sound up to this frame's end
                container.mux(pending[1])
                pending = next(audio, None)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
        while pending is not None:
            container.mux(pending[1])
            pending = next(audio, None)


def _audio_packets(source, container, mode: str, duration: Fraction) -> Iterator[tuple[Fraction, object]]:
    """Add an audio stream to the output ``container`` (now, before the header is written) and return
    its packets, lazily, as (start time in s, packet): ``source``'s first audio stream copied (``mode``
    "copy"; ValueError if its codec is not in :data:`COPY_AUDIO_CODECS` or mp4 cannot hold it) or
    re-encoded to AAC ("aac"), shifted so that the source's first video frame is at 0 and trimmed to
    ``duration`` seconds."""
    import av

    src = source.streams.audio[0]
    video = source.streams.video[0] if source.streams.video else None
    offset = Fraction(0)
    if video is not None and video.start_time is not None and video.time_base is not None:
        offset = video.start_time * video.time_base
    if mode == "copy":
        if src.codec_context.codec.canonical_name not in COPY_AUDIO_CODECS:
            raise ValueError(f"{src.codec_context.codec.canonical_name} audio is re-encoded, not copied")
        out = container.add_stream_from_template(src)  # ValueError when the mp4 muxer cannot hold the codec
        return _copied_packets(source, src, out, offset, duration)
    rate = src.rate if src.rate in av.Codec("aac", "w").audio_rates else 48000
    layout = "mono" if src.channels == 1 else "stereo"
    out = container.add_stream("aac", rate=rate, layout=layout)
    out.bit_rate = AUDIO_BITRATE
    return _encoded_packets(source, src, out, offset, duration)


def _copied_packets(source, src, out, offset: Fraction, duration: Fraction) -> Iterator[tuple[Fraction, object]]:
    """The packets of ``src`` moved to the output stream ``out``, without decoding (see
    :func:`_audio_packets`). A packet that ends before 0 is dropped (one that ends exactly at 0, such
    as AAC's priming packet, is kept: the muxer marks it as lead-in); the last one kept is shortened
    to end at ``duration``."""
    tb = src.time_base  # every demuxed packet of src carries the stream's time base
    shift, end = round(offset / tb), round(duration / tb)
    for packet in source.demux(src):
        if packet.pts is None or packet.size == 0:  # the demuxer's end-of-stream marker
            continue
        start = packet.pts - shift
        if start >= end:
            return
        if start + (packet.duration or 0) < 0:
            continue
        packet.pts, packet.dts = start, (packet.dts - shift if packet.dts is not None else start)
        if packet.duration and start + packet.duration > end:
            packet.duration = end - start
        time = start * tb
        packet.stream = out
        yield time, packet


def _encoded_packets(source, src, out, offset: Fraction, duration: Fraction) -> Iterator[tuple[Fraction, object]]:
    """The audio of ``src`` decoded, resampled to ``out``'s rate and layout, cut to the samples in
    [0, ``duration``) (see :func:`_audio_packets`) and encoded by ``out``."""
    import av

    rate, layout = out.rate, out.layout.name
    time_base = Fraction(1, rate)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    end = round(duration * rate)
    pos: int | None = None  # the output sample index of the next resampled sample

    def cut(chunks) -> Iterator[tuple[Fraction, object]]:
        nonlocal pos
        for chunk in chunks:
            samples = chunk.to_ndarray()  # [channels, n] float32 (planar)
            a, b = max(0, -pos), min(samples.shape[1], end - pos)
            if b > a:
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, a:b]), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, pos + a, time_base
                for packet in out.encode(frame):
                    yield packet.pts * packet.time_base, packet
            pos += samples.shape[1]

    for decoded in source.decode(src):
        if pos is None:
            pos = round((decoded.time - offset) * rate) if decoded.time is not None else 0
        yield from cut(resampler.resample(decoded))
        if pos >= end:
            break
    if pos is not None and pos < end:
        yield from cut(resampler.resample(None))
    for packet in out.encode(None):
        yield packet.pts * packet.time_base, packet


__all__ = ["FRAME_WORDS", "DecordVideo", "FrameFolder", "TensorVideo", "TruncatedVideoWarning", "VideoSource",
           "frame_folder_files", "open_video", "quiet_native_stderr", "read_all_frames", "read_video_checked",
           "shortfall_note", "write_video"]
