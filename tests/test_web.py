"""The web UI (``apps/web.py``) served in-process on the bundled defaults and called through
``gradio_client`` and a real Chromium: Edit (bundled ``edit-demo64``), Upscale (64x64 output unlike
bicubic, bad inputs as clear errors, models loaded once), Video (edit and upscale a clip into a
playable mp4, length limit, the first-frames box), Search (ranked, scored, playable results over the
demo videos) and the serving defaults; unreadable uploads (empty, not an image, a decompression bomb)
get the library's message naming the file, never a server path; concurrent requests each get
exactly their own notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import png_header as _png_header

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def served(one_thread, tmp_path_factory):
    """(demo, url, client, tmp folder): the app on the bundled defaults, its caches in a temp folder."""
    from gradio_client import Client

    from apps.web import build_app, serve

    tmp = tmp_path_factory.mktemp("web")
    demo = build_app(cache_dir=tmp / "cache", embedding_cache=tmp / "embeddings", device="cpu")
    _, url, _ = serve(demo, port=None, prevent_thread_lock=True, quiet=True, preload=False)  # a free port
    try:
        yield demo, url, Client(url, verbose=False), tmp
    finally:
        demo.close(verbose=False)


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _bad_images(folder: Path) -> dict[str, str]:
    """{file name: what the library's message says}: an empty file, a text file named .png and a
    20000x20000 bomb PNG."""
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("my shopping list, not a picture\n")
    _png_header(folder / "bomb.png", 20000, 20000)
    return {"empty.png": "file is empty (0 bytes)",
            "notes.png": "not a recognised image file",
            "bomb.png": "image is 20000x20000 = 400,000,000 pixels, above the limit of 40,000,000"}


def _app_error(client, *args, api_name: str) -> str:
    """The message a call to ``api_name`` fails with."""
    with pytest.raises(Exception) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


def _assert_user_message(msg: str, name: str, expected: str) -> None:
    """``msg`` is the library's message about the upload ``name``: it names the file by its base name
    and never by the server's temporary path, and is not gradio's preprocessing error."""
    from gradio.utils import get_upload_folder

    assert msg.startswith(f"{name}: ") and expected in msg, msg
    assert "preprocess" not in msg and "ImageData" not in msg, msg
    assert get_upload_folder() not in msg and "/tmp" not in msg, msg


def test_serves_on_localhost_with_queue_and_upload_limits(served):
    import argparse

    from apps.commands.app import add_arguments

    demo, url, _, _ = served
    assert url.startswith("http://127.0.0.1:"), url  # serve() was called without a host
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    assert demo._queue.default_concurrency_limit == 2
    assert demo.max_file_size == 50 * 1024 * 1024
    # The image inputs are ImageUpload, rendered as gr.Image; defining it wrote no apps/web.pyi stub.
    assert [c["type"] for c in demo.get_config_file()["components"]
            if c["props"].get("elem_id") in ("edit-input", "upscale-input")] == ["image", "image"]
    assert not (Path(__file__).resolve().parent.parent / "apps" / "web.pyi").exists()


def test_upscale_api(served):
    from gradio_client import handle_file

    demo, _, client, tmp = served
    state = demo.hdvila_state
    lr_path, caption = state.examples.get()[0]
    assert Image.open(lr_path).size == (16, 16)
    (bicubic, sr), png, notes, faces = client.predict(handle_file(lr_path), caption, api_name="/upscale")
    b, s, p = _rgb(bicubic), _rgb(sr), _rgb(png)
    assert b.shape == s.shape == (64, 64, 3)
    assert np.array_equal(s, p), "the PNG download is not the super-resolved image shown"
    assert np.abs(s - b).mean() > 0.5, "the SR output is no different from bicubic"
    assert caption in notes and faces == []  # "Align faces" is off by default

    # A non-square 20x24 frame is centre-cropped and resized, and the note says so; the model is not reloaded.
    arr = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp / "odd.png")
    (_, sr2), _, notes2, _ = client.predict(handle_file(tmp / "odd.png"), "", api_name="/upscale")
    assert Image.open(sr2).size == (64, 64) and "centre-cropped" in notes2
    assert state.sr.loads == 1


def test_upscale_bad_inputs_give_clear_errors(served):
    from gradio_client import handle_file

    _, _, client, tmp = served
    Image.new("RGB", (100, 100), (10, 200, 30)).save(tmp / "big.png")
    with pytest.raises(Exception, match="larger than this model's 64x64 output"):
        client.predict(handle_file(tmp / "big.png"), "", api_name="/upscale")
    Image.new("L", (8000, 5001)).save(tmp / "huge.png")  # 40,008,000 px: over the 40 MP rule
    with pytest.raises(Exception, match="above the limit of 40,000,000"):
        client.predict(handle_file(tmp / "huge.png"), "", api_name="/upscale")
    (tmp / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(Exception, match="junk.png"):
        client.predict(handle_file(tmp / "junk.png"), "", api_name="/upscale")
    # The server is still up after the errors.
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp / "small.png")
    (_, sr), _, _, _ = client.predict(handle_file(tmp / "small.png"), "", api_name="/upscale")
    assert Image.open(sr).size == (64, 64)


def test_unreadable_image_uploads_get_the_library_message(served):
    """An empty file, a text file named .png and a 20000x20000 bomb PNG get what ``load_image`` says
    (naming the upload), not gradio's "Could not preprocess input component", on /edit and /upscale;
    the app still serves afterwards."""
    from gradio_client import handle_file

    demo, _, client, tmp = served
    folder = tmp / "bad-uploads"
    folder.mkdir()
    _, prompt = demo.hdvila_state.edit_examples.get()[0]
    for name, expected in _bad_images(folder).items():
        msg = _app_error(client, handle_file(folder / name), prompt, "mapper", 1.0, 10, 0, api_name="/edit")
        _assert_user_message(msg, name, expected)
        msg = _app_error(client, handle_file(folder / name), "", api_name="/upscale")
        _assert_user_message(msg, name, expected)
    Image.new("RGB", (16, 16), (20, 30, 200)).save(folder / "fine.png")
    (_, sr), _, _, _ = client.predict(handle_file(folder / "fine.png"), "", api_name="/upscale")
    assert Image.open(sr).size == (64, 64)


def test_search_api_ranks_demo_videos(served):
    demo, _, client, _ = served
    gallery, table, summary = client.predict("a red star moving left", 4, api_name="/search")
    rows = table["data"]
    assert table["headers"] == ["rank", "score", "file"]
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= x <= 1.0 for x in scores)
    assert len(set(r[2] for r in rows)) == 4 and all(r[2].endswith(".mp4") for r in rows)
    assert len(gallery) == 4 and all(g["video"].endswith(".mp4") for g in gallery)
    assert [g["caption"].split()[2] for g in gallery] == [r[2] for r in rows]
    assert "searched 6 videos" in summary and str(demo.hdvila_state.cache_dir) not in summary, summary
    # A second query reuses the loaded model and the embedding cache.
    _, table2, _ = client.predict("a blue circle moving up", 6, api_name="/search")
    assert len(table2["data"]) == 6 and demo.hdvila_state.search_model.loads == 1
    assert {r[2] for r in table2["data"]} >= {r[2] for r in rows}
    with pytest.raises(Exception, match="query is empty"):
        client.predict("   ", 3, api_name="/search")


def test_edit_api(served):
    from gradio_client import handle_file

    demo, _, client, tmp = served
    state = demo.hdvila_state
    path, prompt = state.edit_examples.get()[0]
    assert Image.open(path).size == (64, 64) and prompt
    (before, after), recon, png, settings, faces = client.predict(handle_file(path), prompt, "mapper", 1.0, 10, 0,
                                                           api_name="/edit")
    b, a, r, p = _rgb(before), _rgb(after), _rgb(recon), _rgb(png)
    assert b.shape == a.shape == r.shape == (64, 64, 3)
    assert np.array_equal(a, p), "the PNG download is not the edit shown"
    assert np.array_equal(b, _rgb(path)), "a 64x64 input is shown as it is"
    assert np.abs(a - r).mean() > 0.5, "the edit is no different from the reconstruction"
    assert settings["prompt"] == prompt and settings["method"] == "mapper" and settings["steps"] is None
    assert isinstance(settings["inversion_psnr_db"], float) and settings["note"] is None
    assert faces == [] and "faces" not in settings  # "Align faces" is off by default

    # Strength 0 returns the reconstruction; a 50x80 frame is centre-cropped and resized, and the note says so.
    arr = np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp / "wide.png")
    (before0, after0), recon0, _, settings0, _ = client.predict(handle_file(tmp / "wide.png"), prompt, "mapper", 0.0,
                                                             10, 0, api_name="/edit")
    assert np.array_equal(_rgb(after0), _rgb(recon0)) and Image.open(before0).size == (64, 64)
    assert "centre-cropped" in settings0["note"]
    # The optimisation method runs the given number of steps and echoes them.
    (_, after1), _, _, settings1, _ = client.predict(handle_file(path), prompt, "optimize", 1.0, 3, 0, api_name="/edit")
    assert settings1["steps"] == 3 and Image.open(after1).size == (64, 64)
    assert state.edit.loads == 1 and state.edit_error is None and state.edit_path.name == "edit-demo64"


def test_edit_bad_inputs_give_clear_errors(served):
    from gradio_client import handle_file

    demo, _, client, tmp = served
    path, prompt = demo.hdvila_state.edit_examples.get()[1]
    with pytest.raises(Exception, match="empty"):
        client.predict(handle_file(path), "   ", "mapper", 1.0, 10, 0, api_name="/edit")
    with pytest.raises(Exception, match="Shorten it"):
        client.predict(handle_file(path), "stripes " * 200, "mapper", 1.0, 10, 0, api_name="/edit")
    with pytest.raises(Exception, match="greater than maximum value 2"):
        client.predict(handle_file(path), prompt, "mapper", 5.0, 10, 0, api_name="/edit")
    (tmp / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(Exception, match="bad.jpg"):
        client.predict(handle_file(tmp / "bad.jpg"), prompt, "mapper", 1.0, 10, 0, api_name="/edit")


def test_video_api_edits_and_upscales_clips(served):
    import torch
    from gradio_client import handle_file

    from hdvila.videoio import read_all_frames, write_video

    demo, _, client, tmp = served
    rng = np.random.default_rng(1)
    clip = torch.from_numpy(rng.uniform(-1, 1, (6, 3, 64, 64)).astype(np.float32))
    write_video(tmp / "clip64.mp4", clip, fps=8)
    played, download, summary, _ = client.predict(handle_file(tmp / "clip64.mp4"), "edit", "make it striped", "mapper",
                                               1.0, api_name="/video")
    frames, fps = read_all_frames(played["video"] if isinstance(played, dict) else played)
    assert frames.shape == (6, 64, 64, 3) and fps == pytest.approx(8)
    assert Path(download).read_bytes() == Path(played["video"] if isinstance(played, dict) else played).read_bytes()
    assert "edited 6 frames as one clip" in summary and "PSNR" in summary

    write_video(tmp / "clip16.mp4", clip[:4, :, :16, :16], fps=5)
    played, _, summary, _ = client.predict(handle_file(tmp / "clip16.mp4"), "upscale", "", "mapper", 1.0,
                                        api_name="/video")
    frames, _ = read_all_frames(played["video"] if isinstance(played, dict) else played)
    assert frames.shape == (4, 64, 64, 3) and "without a caption" in summary

    from apps.web import VIDEO_MAX_FRAMES

    long = torch.zeros(VIDEO_MAX_FRAMES + 1, 3, 16, 16)
    write_video(tmp / "long.mp4", long, fps=25)
    with pytest.raises(Exception, match=f"limit of {VIDEO_MAX_FRAMES} frames"):
        client.predict(handle_file(tmp / "long.mp4"), "upscale", "", "mapper", 1.0, api_name="/video")


def test_video_messages_name_the_upload_and_offer_what_the_tab_offers(served):
    """A clip over the Video tab's limit is refused naming the user's file ("world.mp4: ..."), never
    gradio's temporary path, with advice the tab offers (trim it, or the "only the first N frames"
    box); with the box ticked its first VIDEO_MAX_FRAMES frames are processed. A file that is not a
    video is named the same way."""
    import torch
    from gradio_client import handle_file

    from apps.web import VIDEO_MAX_FRAMES
    from hdvila.videoio import read_all_frames, write_video

    _, _, client, tmp = served
    folder = tmp / "named"
    folder.mkdir()
    write_video(folder / "world.mp4", torch.zeros(VIDEO_MAX_FRAMES + 1, 3, 16, 16), fps=25)
    msg = _app_error(client, handle_file(folder / "world.mp4"), "upscale", "", "mapper", 1.0, api_name="/video")
    _assert_user_message(msg, "world.mp4", f"longer than the limit of {VIDEO_MAX_FRAMES} frames")
    assert "trim it" in msg and f"Only the first {VIDEO_MAX_FRAMES} frames" in msg, msg
    assert "command" not in msg and "raise the limit" not in msg, msg

    played, _, summary, _ = client.predict(handle_file(folder / "world.mp4"), "upscale", "", "mapper", 1.0, True,
                                        api_name="/video")
    frames, _ = read_all_frames(played["video"] if isinstance(played, dict) else played)
    assert frames.shape == (VIDEO_MAX_FRAMES, 64, 64, 3)
    assert f"the first {VIDEO_MAX_FRAMES} frames" in summary, summary

    (folder / "diary.mp4").write_text("not a video at all\n")
    msg = _app_error(client, handle_file(folder / "diary.mp4"), "edit", "make it striped", "mapper", 1.0,
                     api_name="/video")
    _assert_user_message(msg, "diary.mp4", "cannot decode the video")
    (folder / "nothing.mp4").write_bytes(b"")
    msg = _app_error(client, handle_file(folder / "nothing.mp4"), "upscale", "", "mapper", 1.0, api_name="/video")
    _assert_user_message(msg, "nothing.mp4", "empty")


def test_concurrent_edits_each_get_their_own_notes(served):
    """Two edit requests at once (the server runs two at a time), one a 100x60 frame (centre-crop
    note) and one a 64x64 frame with a prompt of unknown words (the prompt note): each response
    carries exactly its own notes, every time. Notes travel in return values, not through the
    process-wide ``warnings`` machinery that concurrent requests share."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from apps.web import make_edit

    demo, _, _, tmp = served
    state = demo.hdvila_state
    state.edit.get()
    edit = make_edit(state)
    wide = tmp / "wide100x60.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (60, 100, 3), dtype=np.uint8)).save(wide)
    square, _ = state.edit_examples.get()[0]
    assert Image.open(square).size == (64, 64)
    barrier = threading.Barrier(2)

    def settings_of(image, prompt):
        barrier.wait(timeout=600)
        return edit(str(image), prompt, "mapper", 1.0, 10, 0)[3]

    for _ in range(8):
        barrier.reset()
        with ThreadPoolExecutor(2) as pool:
            fa = pool.submit(settings_of, wide, "make it striped")
            fb = pool.submit(settings_of, square, "qwzx blorf")
            a, b = fa.result(timeout=900), fb.result(timeout=900)
        # nothing crossed over between the two requests ...
        assert "may do nothing" not in str(a) and "centre-cropped" not in str(b), (a, b)
        # ... and nothing was lost
        assert a["note"].startswith("wide100x60.png: 100x60 px") and "centre-cropped" in a["note"], a
        assert a["warnings"] is None, a
        assert b["note"] is None and len(b["warnings"]) == 1 and "may do nothing" in b["warnings"][0], b


def test_align_faces_switch_on_edit_upscale_and_video(served):
    """The "Align faces" switch (off by default, checked above): on a real photo, /edit shows the whole
    frame before and after with the face pasted back, the face's record in the settings and the
    aligned crop and its edit in the gallery; /upscale enlarges the whole frame x4 with the face
    super-resolved; a photo without a face is one line naming the upload; the Video tab tracks the
    face and pastes it back into every full-size frame."""
    import torch
    from gradio_client import handle_file

    from apps.web import make_video
    from hdvila.videoio import read_all_frames, write_video

    pytest.importorskip("facenet_pytorch")
    skimage_data = pytest.importorskip("skimage.data")
    demo, _, client, tmp = served
    folder = tmp / "faces"
    folder.mkdir()
    photo = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((256, 256), Image.BICUBIC))
    Image.fromarray(photo).save(folder / "astronaut.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")

    (before, after), recon, png, settings, faces = client.predict(
        handle_file(folder / "astronaut.png"), "make it striped", "mapper", 1.0, 10, 0, True, api_name="/edit")
    b, a = _rgb(before), _rgb(after)
    assert b.shape == a.shape == (256, 256, 3) and np.array_equal(b, photo) and np.array_equal(a, _rgb(png))
    changed = np.abs(a - b).sum(-1) > 0
    assert 0.01 < changed.mean() < 0.5 and not changed[:, -40:].any()  # the face square only
    (face,) = settings["faces"]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["inversion_psnr_db"] > 0
    assert _rgb(recon).shape == (64, 64, 3)
    assert len(faces) == 2 and [Image.open(f["image"]).size for f in faces] == [(64, 64), (64, 64)]
    assert "aligned" in faces[0]["caption"] and "edited" in faces[1]["caption"]

    (bicubic, sr), _, notes, faces = client.predict(handle_file(folder / "astronaut.png"), "", True,
                                                   api_name="/upscale")
    assert Image.open(bicubic).size == Image.open(sr).size == (1024, 1024) and "x4 bicubic" in notes
    assert [Image.open(f["image"]).size for f in faces] == [(16, 16), (64, 64)]

    msg = _app_error(client, handle_file(folder / "coffee.png"), "make it striped", "mapper", 1.0, 10, 0, True,
                     api_name="/edit")
    _assert_user_message(msg, "coffee.png", "no face found")
    assert "\n" not in msg

    clip = torch.stack([torch.from_numpy(photo[t:t + 192, 2 * t + 20:2 * t + 212].copy()) for t in range(8)])
    write_video(folder / "face.mp4", clip.numpy(), fps=8)
    played, _, summary, gallery = make_video(demo.hdvila_state)(str(folder / "face.mp4"), "edit", "make it striped",
                                                                 "mapper", 1.0, False, True)
    frames, _ = read_all_frames(played)
    assert frames.shape == (8, 192, 192, 3) and "one face tracked (found in 8 of 8 frames" in summary, summary
    assert [caption.split(": ")[1] for _, caption in gallery] == ["aligned face", "edited", "pasted back"]
    assert gallery[2][0].size == (192, 192)


def chromium_path() -> str:
    """The system Chromium (``$HDVILA_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH);
    ``make setup`` installs it from apt. Playwright drives it and never downloads a browser."""
    import os
    import shutil

    for candidate in (os.environ.get("HDVILA_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("no Chromium found: install it (`apt-get install -y chromium`; `make test` does) "
                "or set HDVILA_CHROMIUM")


def test_browser_uploads_edits_and_downloads(served, tmp_path):
    """A real Chromium: upload a frame on the Edit tab, type a prompt, click Edit, wait for the
    edited PNG, fetch it, check its size and that it differs from the input; save a screenshot
    (``$HDVILA_SCREENSHOT`` when set, for the README). Then upload a text file named .png and see
    the library's message about it in the page."""
    import io
    import os

    from playwright.sync_api import sync_playwright

    demo, url, _, _ = served
    path, prompt = demo.hdvila_state.edit_examples.get()[2]
    shot = Path(os.environ.get("HDVILA_SCREENSHOT") or tmp_path / "app.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.set_input_files("#edit-input input[type=file]", path)
            page.wait_for_selector("#edit-input img", timeout=30_000)
            page.fill("#edit-prompt textarea", prompt)
            page.click("#edit-button")
            link = page.wait_for_selector("#edit-download a[href]", timeout=120_000)
            png = page.request.get(link.get_attribute("href")).body()
            page.wait_for_selector("#edit-settings", timeout=10_000)
            assert "inversion_psnr_db" in page.inner_text("#edit-settings")
            page.screenshot(path=str(shot), full_page=True)

            # A text file named .png: previewed as the browser can, and the Edit button shows the
            # library's message about it (not gradio's preprocessing error).
            bad = tmp_path / "notes.png"
            bad.write_text("my shopping list, not a picture\n")
            page.goto(url)
            page.set_input_files("#edit-input input[type=file]", str(bad))
            page.fill("#edit-prompt textarea", prompt)
            page.click("#edit-button")
            toast = page.wait_for_selector("text=not a recognised image file", timeout=120_000)
            shown = toast.inner_text()
            assert "notes.png" in shown and "preprocess" not in page.content(), shown
        finally:
            browser.close()
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    assert out.shape == (64, 64, 3)
    assert np.abs(out - _rgb(path)).mean() > 1.0, "the edited image is the input"
    assert Image.open(shot).size[0] == 1280
