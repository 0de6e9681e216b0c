"""End to end on real files: `hdvila eval-retrieval` and `hdvila search` with demo-data mp4s and a tiny,
randomly initialised HD-VILA saved to disk; the embedding cache; bad and missing videos; the Python API."""

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from apps.cli import main as cli_main
from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.demo.export import export_demo_data
from hdvila.modeling_hdvila import HDVILAModel
from hdvila.processing_hdvila import HDVILAProcessor
from hdvila.retrieval.annotations import load_annotations
from hdvila.retrieval.evaluate import evaluate_retrieval
from hdvila.retrieval.index import (
    EmbeddingCache,
    encode_texts,
    find_videos,
    list_videos,
    model_dir_id,
    sampling_settings,
    video_fingerprint,
)
from hdvila.retrieval.metrics import retrieval_metrics

N_VIDEOS = 6
SAMPLING = ["--num-frames", "3", "--sample-rate", "2", "--n-clips", "2"]


def tiny_config():
    """The mini preset shrunk further (random text tower) so that a forward pass takes milliseconds."""
    return HDVILAConfig.preset("mini", stage=1, hr_size=(64, 64), lr_size=(16, 16), resnet_layers=(1, 1, 1, 1),
                               resnet_width=8, vision_width=32, timesformer_depth=1, timesformer_heads=2,
                               projection_dim=32, text_init="random", freeze_text_encoder=False, text_hidden_size=32,
                               text_layers=1, text_heads=2, text_intermediate_size=64)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    export_demo_data(root / "data", videos=N_VIDEOS, images=0, captions=2, frames=16, video_resolution=64)
    torch.manual_seed(0)
    HDVILAModel(tiny_config()).save_pretrained(root / "model")
    return root


def processor_for(model):
    return HDVILAProcessor.from_config(model.config, num_frames=3, sample_rate=2, n_clips=2)


def eval_args(world, *extra, cache=None, videos=None, annotations=None, fmt="jsonl"):
    args = ["eval-retrieval", "--model", world / "model",
            "--annotations", annotations or world / "data" / "hdvila_test.jsonl",
            "--videos", videos or world / "data" / "videos", "--format", fmt, *SAMPLING, "--quiet"]
    args += ["--no-cache"] if cache is None else ["--cache-dir", cache]
    return [*map(str, args), *map(str, extra)]


def table_row(stdout, label):
    line = next(ln for ln in stdout.splitlines() if ln.startswith(label))
    return [float(v) for v in line.split()[1:]]


def test_eval_cli_metrics_match_recomputation_from_cache(cli, world, tmp_path, capsys):
    cache = tmp_path / "cache"
    out_json = tmp_path / "m.json"
    r = cli(*eval_args(world, "--json", out_json, "--workers", "1", cache=cache))
    assert r.returncode == 0, r.stderr
    assert "text->video" in r.stdout and "video->text" in r.stdout and "R@10" in r.stdout
    res = json.loads(out_json.read_text())
    assert res["num_videos"] == N_VIDEOS and res["num_queries"] == 2 * N_VIDEOS
    assert res["videos_encoded"] == N_VIDEOS and res["videos_from_cache"] == 0
    # the printed table is the JSON
    for key, label in (("t2v", "text->video"), ("v2t", "video->text")):
        row = table_row(r.stdout, label)
        want = [res[key][k] for k in ("R@1", "R@5", "R@10", "R@50", "MedR", "MeanR")]
        assert row[:6] == pytest.approx(want, abs=0.051)
        assert row[6] == res[key]["num_queries"]

    # recompute from the cached video features and freshly encoded text
    model = HDVILAModel.from_pretrained(world / "model")
    proc = processor_for(model)
    store = EmbeddingCache(cache, model_dir_id(world / "model"), sampling_settings(proc))
    ann = load_annotations(world / "data" / "hdvila_test.jsonl", "jsonl")
    found, missing = find_videos(world / "data" / "videos", ann.video_ids)
    assert not missing
    cached = [store.get(video_fingerprint(found[v])) for v in ann.video_ids]
    assert all(c is not None and c.shape == (32,) for c in cached)
    video = torch.from_numpy(np.stack(cached))
    # a cached embedding is what the model gives for that video now
    with torch.no_grad():
        direct = model.get_video_features(**{k: v for k, v in proc(videos=[found[ann.video_ids[0]]]).items()})
    torch.testing.assert_close(direct[0], video[0], rtol=1e-4, atol=1e-5)
    texts, owner = ann.queries()
    text, _ = encode_texts(model, proc, texts, progress=False)
    again = retrieval_metrics(text @ video.T, owner)
    for key in ("t2v", "v2t"):
        for k, v in again[key].items():
            assert res[key][k] == pytest.approx(v, abs=1e-6), (key, k)

    # second run (in this process: faster): every video from the cache, same numbers
    assert cli_main(eval_args(world, "--json", "-", "--workers", "0", cache=cache)) == 0
    stdout = capsys.readouterr().out
    res2 = json.loads(stdout[stdout.index("{"):])
    assert res2["videos_encoded"] == 0 and res2["videos_from_cache"] == N_VIDEOS
    assert res2["t2v"] == res["t2v"] and res2["v2t"] == res["v2t"]


def test_second_run_decodes_no_video(world, tmp_path, monkeypatch, capsys):
    import hdvila.processing_hdvila as processing

    opened = []
    real_open = processing._open_video

    def counting_open(source):
        opened.append(str(source))
        return real_open(source)

    monkeypatch.setattr(processing, "_open_video", counting_open)
    cache = tmp_path / "cache"
    args = eval_args(world, "--workers", "0", cache=cache)
    assert cli_main(args) == 0
    assert len(opened) == N_VIDEOS
    first = capsys.readouterr().out
    opened.clear()
    assert cli_main(args) == 0
    assert opened == []                      # nothing decoded, only text encoded
    second = capsys.readouterr().out
    assert "videos encoded: 0, from cache: 6" in second
    assert table_row(first, "text->video") == table_row(second, "text->video")
    # a changed video (new mtime) is encoded again, and only that one
    one = world / "data" / "videos" / "demo_test_00001.mp4"
    st = one.stat()
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    assert cli_main(args) == 0
    assert opened == [str(one)]
    assert "videos encoded: 1, from cache: 5" in capsys.readouterr().out
    # other sampling settings are another cache entry
    opened.clear()
    assert cli_main([*args, "--n-clips", "1"]) == 0
    assert len(opened) == N_VIDEOS


@pytest.fixture
def broken_copy(world, tmp_path):
    """A copy of the demo videos with one garbage .mp4 and one empty .mp4."""
    videos = tmp_path / "videos"
    shutil.copytree(world / "data" / "videos", videos)
    (videos / "demo_test_00002.mp4").write_bytes(os.urandom(4000))
    (videos / "demo_test_00004.mp4").write_bytes(b"")
    return videos


def test_corrupt_videos_stop_the_run_listing_all(cli, world, tmp_path, broken_copy):
    r = cli(*eval_args(world, "--workers", "0", videos=broken_copy))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    err = r.stderr[r.stderr.index("error:"):]
    assert "2 of 6 videos cannot be read" in err
    assert "demo_test_00002.mp4" in err and "demo_test_00004.mp4" in err
    assert "--skip-bad" in err


def test_skip_bad_continues_and_lists(world, tmp_path, broken_copy, capsys):
    out_json = tmp_path / "r.json"
    assert cli_main(eval_args(world, "--skip-bad", "--workers", "0", "--json", out_json, videos=broken_copy,
                              cache=tmp_path / "c")) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable video(s)" in out
    assert "demo_test_00002.mp4" in out and "demo_test_00004.mp4" in out
    res = json.loads(out_json.read_text())
    assert res["num_videos"] == 4 and res["num_queries"] == 8
    assert sorted(s["video_id"] for s in res["skipped_videos"]) == ["demo_test_00002", "demo_test_00004"]
    assert res["t2v"]["num_queries"] == 8 and res["v2t"]["num_queries"] == 4


def test_missing_videos_are_listed(world, tmp_path, capsys):
    ann = tmp_path / "a.jsonl"
    ann.write_text((world / "data" / "hdvila_test.jsonl").read_text()
                   + '{"clip_id": "ghost_one", "text": "nothing"}\n{"clip_id": "ghost_two", "text": "nobody"}\n')
    assert cli_main(eval_args(world, "--workers", "0", annotations=ann)) == 2
    err = capsys.readouterr().err
    assert "2 of 8 videos not found" in err and "ghost_one" in err and "ghost_two" in err
    assert cli_main(eval_args(world, "--workers", "0", "--skip-bad", annotations=ann)) == 0
    out = capsys.readouterr().out
    assert "skipped 2 missing video(s)" in out and "ghost_two" in out and "6 videos, 12 queries" in out


def test_empty_caption_row_is_a_clear_error(world, tmp_path, capsys):
    ann = tmp_path / "empty.jsonl"
    ann.write_text('{"clip_id": "demo_test_00000", "text": "a red star"}\n'
                   '{"clip_id": "demo_test_00001", "text": " "}\n')
    assert cli_main(eval_args(world, annotations=ann)) == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: .*empty\.jsonl, line 2: empty 'text'", err) and "Traceback" not in err
    csv = tmp_path / "empty.csv"
    csv.write_text("key,vid_key,video_id,sentence\nret0,m0,demo_test_00000,\n")
    assert cli_main(eval_args(world, annotations=csv, fmt="msrvtt")) == 2
    assert "empty.csv, line 2 (row 1): empty 'sentence'" in capsys.readouterr().err


def test_msrvtt_csv_and_paragraph_through_cli(world, tmp_path, capsys):
    out_json = tmp_path / "o.json"
    assert cli_main(eval_args(world, "--workers", "0", "--json", out_json, fmt="msrvtt",
                              annotations=world / "data" / "msrvtt_test.csv", cache=tmp_path / "c")) == 0
    res = json.loads(out_json.read_text())
    assert res["num_queries"] == N_VIDEOS and not res["paragraph"]
    assert cli_main(eval_args(world, "--workers", "0", "--json", out_json, "--paragraph",
                              cache=tmp_path / "c")) == 0
    res = json.loads(out_json.read_text())
    assert res["paragraph"] and res["num_queries"] == N_VIDEOS and res["videos_from_cache"] == N_VIDEOS
    assert "(paragraphs)" in capsys.readouterr().out


def test_search_prints_top_results_and_indexes_incrementally(cli, world, tmp_path, capsys):
    videos = tmp_path / "videos"
    shutil.copytree(world / "data" / "videos", videos)
    cache = tmp_path / "cache"
    args = ["search", videos, "a red star moving left", "--top", "3", "--model", world / "model", *SAMPLING,
            "--cache-dir", cache, "--workers", "0", "--quiet"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"^\s+\d+\s+-?\d", ln)]
    assert [int(x[0]) for x in rows] == [1, 2, 3]
    scores = [float(x[1]) for x in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert all(os.path.isfile(x[2]) and x[2].startswith(str(videos)) for x in rows)
    assert "6 newly indexed, 0 from cache" in r.stdout
    # a new video is the only one indexed next time
    shutil.copy(videos / "demo_test_00000.mp4", videos / "copy.mp4")
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    assert cli_main([*map(str, args[:3]), "--top", "10", *map(str, args[5:])]) == 0
    captured = capsys.readouterr()
    assert "searched 7 videos (1 newly indexed, 6 from cache)" in captured.out
    assert "warning: skipped" in captured.err and "broken.mp4" in captured.err
    rows = [ln.split() for ln in captured.out.splitlines() if re.match(r"^\s+\d+\s+-?\d", ln)]
    assert len(rows) == 7
    # the copy scores exactly like its original
    by_file = {os.path.basename(x[2]): float(x[1]) for x in rows}
    assert by_file["copy.mp4"] == pytest.approx(by_file["demo_test_00000.mp4"], abs=1e-4)


def test_search_without_bundled_model_says_what_to_do(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HDVILA_CHECKPOINTS", str(tmp_path / "no-checkpoints"))
    assert cli_main(["search", str(world / "data" / "videos"), "a star", "--no-cache", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--model" in err and "hdvila-mini" in err
    assert cli_main(["search", str(world / "data" / "videos"), "  ", "--model", str(world / "model")]) == 2
    assert "query is empty" in capsys.readouterr().err
    assert cli_main(["search", str(tmp_path / "nowhere"), "a star", "--model", str(world / "model")]) == 2
    assert "not found" in capsys.readouterr().err


def test_find_videos_extensions_frame_folders_and_hidden(tmp_path):
    d = tmp_path / "v"
    (d / "sub").mkdir(parents=True)
    for name in ("a.mp4", "a.avi", "b.MKV", "sub/c.webm", "e.mov", "notes.txt"):
        (d / name).write_bytes(b"x")
    (d / "frames_vid").mkdir()
    for i in range(3):
        (d / "frames_vid" / f"{i + 1:04d}.jpg").write_bytes(b"x")
    (d / ".cache" / "z").mkdir(parents=True)
    (d / ".cache" / "z" / "hidden.mp4").write_bytes(b"x")
    (d / "1004_Juno").mkdir()
    (d / "1004_Juno" / "1004_Juno_00.01-00.02.avi").write_bytes(b"x")
    listed = [p.relative_to(d).as_posix() for p in list_videos(d)]
    assert listed == ["1004_Juno/1004_Juno_00.01-00.02.avi", "a.avi", "a.mp4", "b.MKV", "e.mov", "frames_vid",
                      "sub/c.webm"]
    found, missing = find_videos(d, ["a", "b", "c", "frames_vid", "e.mov", "e.avi", "v_e", "1004_Juno_00.01-00.02",
                                     "hidden", "nope"])
    assert found["a"] == d / "a.mp4"                       # .mp4 preferred over .avi
    assert found["b"] == d / "b.MKV" and found["c"] == d / "sub" / "c.webm"
    assert found["frames_vid"] == d / "frames_vid"
    assert found["e.mov"] == d / "e.mov" and found["e.avi"] == d / "e.mov"   # DiDeMo-style ids with extensions
    assert found["v_e"] == d / "e.mov"                     # ActivityNet ids without the v_ prefix on disk
    assert found["1004_Juno_00.01-00.02"].name.endswith(".avi")  # LSMDC movie sub-folders
    assert missing == ["hidden", "nope"]


def test_python_api_in_memory_videos_features_and_frame_folder(world, tmp_path):
    """The training loop's entry point: in-memory videos or features give the file-based numbers."""
    import decord

    from hdvila.imageio import save_image

    model = HDVILAModel.from_pretrained(world / "model")
    model.train()
    proc = processor_for(model)
    ann = load_annotations(world / "data" / "hdvila_test.jsonl", "jsonl")
    from_files = evaluate_retrieval(model, proc, ann, world / "data" / "videos", progress=False, return_features=True)
    assert model.training                                  # mode restored for the training loop
    assert from_files["videos_encoded"] == N_VIDEOS and from_files["videos_from_cache"] == 0
    tensors = {}
    for vid in ann.video_ids:
        r = decord.VideoReader(str(world / "data" / "videos" / f"{vid}.mp4"))
        tensors[vid] = torch.from_numpy(r.get_batch(list(range(len(r)))).asnumpy()).permute(0, 3, 1, 2)
    in_memory = evaluate_retrieval(model, proc, ann, videos=tensors, progress=False, return_features=True)
    torch.testing.assert_close(in_memory["features"]["video"], from_files["features"]["video"])
    assert in_memory["t2v"] == from_files["t2v"] and in_memory["v2t"] == from_files["v2t"]
    feats = evaluate_retrieval(model, proc, ann, video_features=from_files["features"]["video"], progress=False)
    assert feats["t2v"] == from_files["t2v"]
    # a frame folder (PNG frames of video 0) stands in for its mp4
    frames_dir = tmp_path / "videos" / ann.video_ids[0]
    for i, frame in enumerate(tensors[ann.video_ids[0]]):
        save_image(frame.permute(1, 2, 0).numpy(), frames_dir / f"{i + 1:05d}.png")
    for vid in ann.video_ids[1:]:
        shutil.copy(world / "data" / "videos" / f"{vid}.mp4", tmp_path / "videos")
    with_folder = evaluate_retrieval(model, proc, ann, tmp_path / "videos", progress=False, return_features=True,
                                     cache_dir=tmp_path / "cache")
    torch.testing.assert_close(with_folder["features"]["video"], from_files["features"]["video"], atol=1e-5, rtol=1e-4)
    again = evaluate_retrieval(model, proc, ann, tmp_path / "videos", progress=False, cache_dir=tmp_path / "cache")
    assert again["videos_from_cache"] == N_VIDEOS        # frame folders are cached too (model id from memory)


def test_cache_survives_damaged_entries_and_unwritable_disk(world, tmp_path, monkeypatch):
    model = HDVILAModel.from_pretrained(world / "model")
    proc = processor_for(model)
    ann = load_annotations(world / "data" / "hdvila_test.jsonl", "jsonl")
    videos, cache = world / "data" / "videos", tmp_path / "cache"
    first = evaluate_retrieval(model, proc, ann, videos, cache_dir=cache, progress=False)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == N_VIDEOS and not list(cache.rglob(".tmp-*"))   # no temporary files left behind
    entries[0].write_bytes(entries[0].read_bytes()[:50])                  # a truncated entry
    again = evaluate_retrieval(model, proc, ann, videos, cache_dir=cache, progress=False)
    assert (again["videos_encoded"], again["videos_from_cache"]) == (1, N_VIDEOS - 1)
    assert again["t2v"] == first["t2v"] and again["v2t"] == first["v2t"]
    # a different model (one weight changed) never reads these entries
    with torch.no_grad():
        model.transformer.v_proj.bias.add_(1.0)
    other = evaluate_retrieval(model, proc, ann, videos, cache_dir=cache, progress=False)
    assert other["videos_encoded"] == N_VIDEOS
    # a cache that cannot be written warns and the evaluation still finishes
    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(EmbeddingCache, "put", refuse)
    with pytest.warns(UserWarning, match="cannot write the embedding cache"):
        res = evaluate_retrieval(model, proc, ann, videos, cache_dir=tmp_path / "other", progress=False)
    assert res["videos_encoded"] == N_VIDEOS and res["t2v"]["num_queries"] == 2 * N_VIDEOS
