"""Bad values for the web UI's actions (``apps/web.py``), called directly as gradio would call them:
NaN, None, infinities, negative, huge and non-numeric values of every numeric or optional field
come back as a one-line ``gr.Error`` naming the field, before any upload is decoded or model loaded;
an existing folder that is not a pipeline (``--sr-model`` / ``--edit-model``) leaves the app serving
its other tabs with a one-line note in the affected tab, a one-line warning at launch (no
traceback), and the same line from a request there; a truncated clip's note reaches the Video
tab's summary."""

from __future__ import annotations

import math

import gradio as gr
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")

BAD_NUMBERS = [math.nan, None, math.inf, -math.inf, -1, 1e30, "abc", True, [3]]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    from apps.web import AppState

    tmp = tmp_path_factory.mktemp("web-bad")
    st = AppState(cache_dir=tmp / "cache", embedding_cache=tmp / "embeddings", device="cpu")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp / "frame.png")
    st.frame = str(tmp / "frame.png")
    return st


def _one_line_error(fn, *args, field: str) -> str:
    with pytest.raises(gr.Error) as info:
        fn(*args)
    msg = str(info.value.message)
    assert "\n" not in msg and msg.startswith(field), msg
    assert "Traceback" not in msg, msg
    return msg


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
def test_numeric_fields_give_one_line_errors(state, bad):
    from apps.web import make_edit, make_search, make_video

    edit, search, video = make_edit(state), make_search(state), make_video(state)
    img = state.frame
    msg = _one_line_error(edit, img, "make it red", "mapper", 1.0, bad, 0, field="steps")
    assert "from 1 to 500" in msg
    _one_line_error(edit, img, "make it red", "mapper", 1.0, 10, bad, field="refine steps")
    _one_line_error(edit, img, "make it red", "mapper", bad, 10, 0, field="strength")
    _one_line_error(edit, img, "make it red", bad, 1.0, 10, 0, field="method")
    msg = _one_line_error(search, "a red star", bad, field="top")
    assert "from 1 to 20" in msg
    _one_line_error(video, "clip.mp4", "edit", "make it red", "mapper", bad, field="strength")
    _one_line_error(video, "clip.mp4", "edit", "make it red", bad, 1.0, field="method")
    _one_line_error(video, "clip.mp4", bad, "make it red", "mapper", 1.0, field="task")
    # Nothing was loaded to find these out.
    assert state.edit.loads == state.search_model.loads == state.sr.loads == 0


@pytest.mark.parametrize("bad", [math.nan, 3, 1.5], ids=repr)
def test_text_fields_that_are_not_text(state, bad):
    from apps.web import make_edit, make_search, make_upscale, make_video

    _one_line_error(make_edit(state), state.frame, bad, "mapper", 1.0, 10, 0, field="prompt")
    _one_line_error(make_search(state), bad, 5, field="query")
    _one_line_error(make_upscale(state), state.frame, bad, field="caption")
    _one_line_error(make_video(state), "clip.mp4", "upscale", bad, field="prompt")


def test_good_edge_values_pass_the_checks(state):
    """The ends of each range and None for optional text pass the field checks (the request then
    fails on what comes next: here a missing upload, so no model loads)."""
    from apps.web import _int_in, _number_in, make_upscale, make_video

    assert _int_in(1, 1, 500, "steps") == 1 and _int_in(500.0, 1, 500, "steps") == 500
    assert _number_in(0, 0.0, 2.0, "strength") == 0.0 and _number_in("2", 0.0, 2.0, "strength") == 2.0
    with pytest.raises(gr.Error, match="video not found"):
        make_video(state)(state.frame + ".mp4", "upscale", None, None, None)  # strength ignored for upscale
    with pytest.raises(gr.Error, match="Upload a low-resolution image"):
        make_upscale(state)(None, None)


# ---- a folder that is not a pipeline ----------------------------------------------------------------
@pytest.mark.parametrize("option", ["sr_model", "edit_model"])
def test_empty_model_folder_leaves_the_other_tabs_working(tmp_path, option):
    from apps.web import build_app, make_edit, make_upscale

    empty = tmp_path / "empty"
    empty.mkdir()
    demo = build_app(cache_dir=tmp_path / "cache", device="cpu", **{option: str(empty)})
    st = demo.hdvila_state
    tab, other = ("upscale", "edit") if option == "sr_model" else ("edit", "upscale")
    flag = "--sr-model" if option == "sr_model" else "--edit-model"
    line = st.unavailable[tab]
    assert line.startswith(f"{flag} {empty}: no pipeline_index.json") and "\n" not in line
    assert other not in st.unavailable
    notes = [c for c in demo.get_config_file()["components"] if c["props"].get("elem_id") == f"{tab}-unavailable"]
    assert len(notes) == 1 and line in notes[0]["props"]["value"]
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "small.png")
    action = make_upscale(st) if tab == "upscale" else make_edit(st)
    args = (str(tmp_path / "small.png"), "make it red") + (() if tab == "upscale" else ("mapper", 1.0, 10, 0))
    with pytest.raises(gr.Error) as info:
        action(*args)
    assert info.value.message == line


def test_app_command_warns_in_one_line_for_a_bad_model_folder(tmp_path, monkeypatch, capsys):
    import apps.web
    from apps.cli import main

    (tmp_path / "sr").mkdir()
    (tmp_path / "sr" / "pipeline_index.json").write_text("{}")
    (tmp_path / "sr" / "sr_model").mkdir()
    (tmp_path / "sr" / "sr_model" / "config.json").write_text("{not json")
    served = []
    monkeypatch.setattr(apps.web, "serve", lambda demo, **kw: served.append(demo))
    assert main(["app", "--sr-model", str(tmp_path / "sr"), "--cache-dir", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert served and "Traceback" not in err, err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "Upscale tab is unavailable" in warning[0] and "sr_model/config.json" in warning[0]
    assert main(["app", "--sr-model", str(tmp_path / "missing"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sr-model") and "not found" in err and "Traceback" not in err


# ---- a truncated clip on the Video tab ----------------------------------------------------------------
def test_video_tab_notes_a_truncated_clip(state, tmp_path):
    from apps.web import make_video
    from tests.test_videoio_truncated import truncated_mp4

    clip = truncated_mp4(tmp_path / "cut.mp4", frames=60, keep=0.55, size=16)
    _, _, summary, _ = make_video(state)(str(clip), "upscale", "")
    assert "of 60 declared frames; the file may be truncated" in summary, summary
    assert "cut.mp4: decoded" in summary and str(tmp_path) not in summary, summary
