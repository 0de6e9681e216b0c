"""The web UI (``apps/web.py``) served in-process on the bundled models and called through
``gradio_client``: Upscale (64x64 output unlike bicubic, bad inputs as clear errors, models loaded
once), Search (ranked, scored, playable results over the demo videos) and the serving defaults."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(one_thread, tmp_path_factory):
    """(demo, client, tmp folder): the app on the bundled defaults, its caches in a temp folder."""
    from gradio_client import Client

    from apps.web import build_app, serve

    tmp = tmp_path_factory.mktemp("web")
    demo = build_app(cache_dir=tmp / "cache", embedding_cache=tmp / "embeddings", device="cpu")
    _, url, _ = serve(demo, port=_free_port(), prevent_thread_lock=True, quiet=True, preload=False)
    try:
        yield demo, url, Client(url, verbose=False), tmp
    finally:
        demo.close(verbose=False)


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


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


def test_upscale_api(served):
    from gradio_client import handle_file

    demo, _, client, tmp = served
    state = demo.hdvila_state
    lr_path, caption = state.examples.get()[0]
    assert Image.open(lr_path).size == (16, 16)
    (bicubic, sr), png, notes = client.predict(handle_file(lr_path), caption, api_name="/upscale")
    b, s, p = _rgb(bicubic), _rgb(sr), _rgb(png)
    assert b.shape == s.shape == (64, 64, 3)
    assert np.array_equal(s, p), "the PNG download is not the super-resolved image shown"
    assert np.abs(s - b).mean() > 0.5, "the SR output is no different from bicubic"
    assert caption in notes

    # A non-square 20x24 frame is centre-cropped and resized, and the note says so; the model is not reloaded.
    arr = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp / "odd.png")
    (_, sr2), _, notes2 = client.predict(handle_file(tmp / "odd.png"), "", api_name="/upscale")
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
    (_, sr), _, _ = client.predict(handle_file(tmp / "small.png"), "", api_name="/upscale")
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
    assert "searched 6 videos" in summary
    # A second query reuses the loaded model and the embedding cache.
    _, table2, _ = client.predict("a blue circle moving up", 6, api_name="/search")
    assert len(table2["data"]) == 6 and demo.hdvila_state.search_model.loads == 1
    assert {r[2] for r in table2["data"]} >= {r[2] for r in rows}
    with pytest.raises(Exception, match="query is empty"):
        client.predict("   ", 3, api_name="/search")
