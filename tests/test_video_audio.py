"""Video outputs keep the input's audio: :func:`hdvila.videoio.write_video` with ``audio_from`` copies
an mp4-friendly track (AAC) packet for packet, re-encodes another (PCM) to AAC, trims either to the
frames written, writes no audio for a source without any, and stays atomic when the audio fails;
``hdvila edit``, ``hdvila upscale`` and the web UI's Video tab pass their source along."""

from __future__ import annotations

import warnings
from fractions import Fraction

import av
import numpy as np
import pytest

from hdvila import videoio
from hdvila.atomic import stale_temporaries
from hdvila.videoio import read_all_frames, write_video

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = 16000


def make_clip(path, frames: int = 12, size: int = 64, fps: int = 8, seconds: float = 1.5, codec: str | None = "aac",
              container: str = "mp4", layout: str = "mono"):
    """A test video: ``frames`` grey frames at ``fps`` and, unless ``codec`` is None, a 440 Hz sine of
    ``seconds`` at 16 kHz in ``codec`` (``pcm_s16le`` needs ``container`` "mov")."""
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        if codec is not None:
            audio = out.add_stream(codec, rate=RATE)
            audio.layout = layout
            if codec.startswith("pcm_"):
                audio.format = "s16"
        for i in range(frames):
            rgb = np.full((size, size, 3), 20 * i % 256, np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode())
        if codec is not None:
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
            channels = 2 if layout == "stereo" else 1
            frame = av.AudioFrame.from_ndarray(np.repeat(wave[None], channels, 0), format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = RATE, 0, Fraction(1, RATE)
            out.mux(audio.encode(frame))
            out.mux(audio.encode())
    return path


def audio_of(path) -> dict | None:
    """The first audio stream of ``path``: codec, channels, the duration its container states (what
    players show), the decoded samples and the payloads of its packets; None without one."""
    with av.open(str(path)) as f:
        if not f.streams.audio:
            return None
        a = f.streams.audio[0]
        info = {"codec": a.codec_context.codec.canonical_name, "channels": a.channels, "rate": a.rate,
                "duration": float(a.duration * a.time_base)}
        info["packets"] = [bytes(p) for p in f.demux(a) if p.size]
    with av.open(str(path)) as f:
        info["samples"] = sum(frame.samples for frame in f.decode(audio=0))
    return info


def _frames(n: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_aac_audio_is_copied_and_trimmed_to_the_frames(tmp_path):
    src = make_clip(tmp_path / "src.mp4")
    source = audio_of(src)
    assert source["codec"] == "aac" and source["duration"] == pytest.approx(1.5)

    full = write_video(tmp_path / "full.mp4", _frames(12), fps=8, audio_from=src)
    out = audio_of(full)
    assert out["codec"] == "aac" and out["duration"] == pytest.approx(1.5, abs=0.01)
    assert out["packets"] == source["packets"]  # remuxed: the very packets, not a re-encode
    assert len(read_all_frames(full)[0]) == 12

    short = write_video(tmp_path / "short.mp4", _frames(5), fps=8, audio_from=src)  # e.g. a max_frames cut
    out = audio_of(short)
    assert out["duration"] == pytest.approx(5 / 8, abs=0.01)  # trimmed to the video's 0.625 s
    assert out["packets"] == source["packets"][:len(out["packets"])]
    assert abs(out["samples"] - 5 / 8 * RATE) <= 2 * 1024  # within an AAC frame or two (priming)
    assert not stale_temporaries(short) and not stale_temporaries(full)


def test_pcm_audio_is_reencoded_to_aac_and_trimmed(tmp_path):
    src = make_clip(tmp_path / "src.mov", codec="pcm_s16le", container="mov", layout="stereo")
    assert audio_of(src)["codec"] == "pcm_s16le"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = audio_of(write_video(tmp_path / "out.mp4", _frames(6), fps=8, audio_from=src))
    assert out["codec"] == "aac" and out["channels"] == 2 and out["rate"] == RATE
    assert out["duration"] == pytest.approx(6 / 8, abs=0.01)
    assert abs(out["samples"] - 6 / 8 * RATE) <= 2 * 1024


def test_no_audio_in_the_source_gives_no_audio_and_no_error(tmp_path):
    silent = make_clip(tmp_path / "silent.mp4", codec=None)
    (tmp_path / "frames").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for source in (silent, tmp_path / "frames", None):
            out = write_video(tmp_path / "out.mp4", _frames(4), fps=8, audio_from=source)
            assert audio_of(out) is None and len(read_all_frames(out)[0]) == 4


def test_audio_that_cannot_be_copied_or_encoded_is_left_out_with_a_warning(tmp_path, monkeypatch):
    """A copy that fails is retried as a re-encode; when that fails too the video is written alone,
    with a warning; each failed try leaves no temporary file and no partial output."""
    src = make_clip(tmp_path / "src.mp4")
    monkeypatch.setattr(videoio, "COPY_AUDIO_CODECS", frozenset())  # the copy is refused: re-encoded
    out = audio_of(write_video(tmp_path / "re.mp4", _frames(4), fps=8, audio_from=src))
    assert out["codec"] == "aac" and out["duration"] == pytest.approx(0.5, abs=0.01)
    assert out["packets"] != audio_of(src)["packets"][:len(out["packets"])]

    def broken(*args, **kwargs):
        raise ValueError("the track is corrupt")

    monkeypatch.setattr(videoio, "_audio_packets", broken)
    with pytest.warns(UserWarning, match="without the audio of .*the track is corrupt"):
        path = write_video(tmp_path / "alone.mp4", _frames(4), fps=8, audio_from=src)
    assert audio_of(path) is None and len(read_all_frames(path)[0]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.mp4", "re.mp4", "src.mp4"]


def test_edit_command_keeps_the_audio(cli, tmp_path):
    from tests.conftest import small_edit_pipeline

    model = small_edit_pipeline(tmp_path / "pipe")
    src = make_clip(tmp_path / "clip.mp4")
    r = cli("edit", src, tmp_path / "edited.mp4", "--prompt", "make it striped", "--model", model, "--quiet",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    out = audio_of(tmp_path / "edited.mp4")
    assert out is not None and out["codec"] == "aac" and out["duration"] == pytest.approx(1.5, abs=0.01)
    assert out["packets"] == audio_of(src)["packets"]


def test_upscale_command_keeps_the_audio_cut_to_the_video(cli, tmp_path):
    small = make_clip(tmp_path / "small.mp4", frames=4, size=16, seconds=2.0)  # the sound runs past the video
    r = cli("upscale", small, tmp_path / "up.mp4", "--quiet", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_all_frames(tmp_path / "up.mp4")[0].shape == (4, 64, 64, 3)
    assert audio_of(tmp_path / "up.mp4")["duration"] == pytest.approx(4 / 8, abs=0.01)


def test_web_video_tab_keeps_the_audio(tmp_path):
    from apps.web import AppState, make_video

    src = make_clip(tmp_path / "clip.mp4", frames=4, size=16)
    played, download, summary, _ = make_video(AppState(cache_dir=tmp_path / "cache", device="cpu"))(
        str(src), "upscale", "", "mapper", 1.0)
    assert played == download and "upscaled" in summary
    out = audio_of(played)
    assert out is not None and out["codec"] == "aac" and out["duration"] == pytest.approx(0.5, abs=0.01)
