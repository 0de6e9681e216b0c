"""`hdvila demo-data` writes real files that decord and PIL read back."""

import csv
import json

import decord
import numpy as np
from PIL import Image

from hdvila.demo import DemoImageDataset, DemoVideoDataset
from hdvila.tensors import unit_to_uint8


def test_demo_data_files_read_back(cli, tmp_path):
    out = tmp_path / "demo"
    r = cli("demo-data", out, "--split", "test", "--videos", "3", "--images", "4", "--captions", "2", "--frames", "12")
    assert r.returncode == 0, r.stderr
    assert "wrote 3 videos and 4 images" in r.stdout
    # videos: decord reads every frame back, close to the renders (H.264 at crf 12)
    ds = DemoVideoDataset("test", 3, num_frames=12)
    for i in range(3):
        vr = decord.VideoReader(str(out / "videos" / f"demo_test_{i:05d}.mp4"))
        assert len(vr) == 12
        frames = vr.get_batch(list(range(12))).asnumpy().astype(np.float64)
        assert frames.shape == (12, 128, 128, 3)
        ref = unit_to_uint8(ds[i]["video"]).permute(0, 2, 3, 1).numpy().astype(np.float64)
        psnr = 10 * np.log10(255 ** 2 / np.mean((frames - ref) ** 2))
        assert psnr > 32, psnr
    # images: PNG, lossless
    ids = DemoImageDataset("test", 4)
    for i in range(4):
        with Image.open(out / "images" / f"demo_test_img_{i:05d}.png") as im:
            assert im.format == "PNG" and im.size == (64, 64)
            assert np.array_equal(np.asarray(im), unit_to_uint8(ids[i]["image"]).permute(1, 2, 0).numpy())
    # MSR-VTT CSV (JSFusion 1k-A layout)
    rows = list(csv.DictReader(open(out / "msrvtt_test.csv")))
    assert list(rows[0]) == ["key", "vid_key", "video_id", "sentence"]
    assert [r["video_id"] for r in rows] == [f"demo_test_{i:05d}" for i in range(3)]
    assert rows[1]["sentence"] == ds.caption(1, 0)
    # MSR-VTT JSON
    msr = json.loads((out / "msrvtt_data.json").read_text())
    assert len(msr["videos"]) == 3 and len(msr["sentences"]) == 6
    assert {s["video_id"] for s in msr["sentences"]} == {r["video_id"] for r in rows}
    # HD-VILA jsonl
    lines = [json.loads(x) for x in (out / "hdvila_test.jsonl").read_text().splitlines()]
    assert lines[0]["clip_id"] == "demo_test_00000" and lines[0]["text"] == [ds.caption(0, 0), ds.caption(0, 1)]
    # images jsonl and video metadata
    imgs = [json.loads(x) for x in (out / "images_test.jsonl").read_text().splitlines()]
    assert imgs[2]["image"] == "images/demo_test_img_00002.png" and imgs[2]["caption"] == ids[2]["caption"]
    assert imgs[2]["attributes"]["shape"] == ids.spec(2).shape
    meta = [json.loads(x) for x in (out / "videos_meta_test.jsonl").read_text().splitlines()]
    assert meta[0]["motion"] == ds.spec(0).motion
    # nothing temporary left behind
    assert not [p for p in out.rglob(".tmp-*")]


def test_demo_data_bad_arguments(cli, tmp_path):
    r = cli("demo-data", tmp_path / "x", "--videos", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "error: --videos must be >= 0, got -1"
    assert not (tmp_path / "x" / "videos").exists()
