"""A video file cut off mid-download (its container declares more frames than decode) is read with a
one-line note, through the readers' ``notes`` (or a :class:`TruncatedVideoWarning` when the caller
collects none); a container that misreports by a frame or two gets no note."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from hdvila.videoio import TruncatedVideoWarning, read_all_frames, read_video_checked, shortfall_note

pytestmark = pytest.mark.usefixtures("one_thread")


def truncated_mp4(path: Path, frames: int = 60, keep: float = 0.55, size: int = 32, fps: int = 10) -> Path:
    """An mp4 of ``frames`` noise frames at ``fps`` with its index first (faststart, so a cut file still
    opens and declares ``frames``), cut to the first ``keep`` of its bytes (1.0: whole)."""
    import av

    rng = np.random.default_rng(0)
    full = path.with_name(path.stem + "-full.mp4")
    with av.open(str(full), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for f in rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8):
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_truncated_file_is_read_with_a_note(tmp_path):
    clip = truncated_mp4(tmp_path / "cut.mp4")
    notes: list[str] = []
    frames, fps = read_all_frames(clip, notes=notes)
    assert 0 < len(frames) < 54 and fps == 10
    assert notes == [f"{clip}: decoded {len(frames)} of 60 declared frames; the file may be truncated "
                     "(re-download or re-export it to get the whole video)."]
    # A caller that collects no notes gets the same line as a warning, not silence.
    with pytest.warns(TruncatedVideoWarning, match=f"decoded {len(frames)} of 60 declared frames"):
        assert len(read_video_checked(clip)[0]) == len(frames)
    # A read stopped by max_frames is not judged.
    notes = []
    assert len(read_all_frames(clip, max_frames=5, notes=notes)[0]) == 5 and notes == []


def test_whole_file_gets_no_note(tmp_path):
    clip = truncated_mp4(tmp_path / "whole.mp4", keep=1.0)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedVideoWarning)
        assert len(read_all_frames(clip, notes=notes)[0]) == 60
        assert len(read_video_checked(clip)[0]) == 60
    assert notes == []


@pytest.mark.parametrize("decoded, declared, noted", [
    (60, 60, False), (59, 60, False), (58, 60, False), (55, 60, False),  # misreported by a few: no note
    (53, 60, True), (32, 60, True), (0, 60, True),
    (1, 2, False), (8, 10, True), (5, None, False), (5, 0, False)])
def test_shortfall_tolerance(decoded, declared, noted):
    note = shortfall_note("v.mp4", decoded, declared)
    assert (note is not None) == noted
    if noted:
        assert note.startswith(f"v.mp4: decoded {decoded} of {declared} declared frames") and "\n" not in note


def test_edit_and_upscale_commands_say_so(tmp_path, cli):
    """``hdvila edit`` and ``hdvila upscale`` process what decodes, print the note on one line and
    record it in the edit's sidecar."""
    import json

    clip = truncated_mp4(tmp_path / "cut.mp4", size=64)
    r = cli("edit", clip, tmp_path / "e.mp4", "--prompt", "a blue one", "--quiet")
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "declared frames" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {clip}: decoded ") and "Warning" not in r.stderr
    assert "declared frames" in json.loads((tmp_path / "e.mp4.json").read_text())["note"]
    small = truncated_mp4(tmp_path / "small.mp4", size=16)
    r = cli("upscale", small, tmp_path / "u.mp4", "--quiet")
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "declared frames" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {small}: decoded ") and "Warning" not in r.stderr
