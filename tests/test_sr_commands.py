"""``hdvila upscale`` and ``hdvila eval-sr`` on the bundled x4 pipeline: images, folders (relative
paths kept, resumable, errors report), videos, captions files, the input policy, and the metrics."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from hdvila.paths import bundled

SR = bundled("sr-demo64-x4")


def _png(path, size, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_bundled_pipeline_loads_and_upscales_x4():
    from generation.superres.pipeline_sr import SRPipeline

    pipe = SRPipeline.from_pretrained(SR)
    assert (pipe.lr_resolution, pipe.out_resolution, pipe.sr_model.config.scale) == (16, 64, 4)
    img = Image.new("RGB", (16, 16), (200, 30, 30))
    out = pipe(img, prompt="a red circle with stripes on a white background").images[0]
    assert out.size == (64, 64)
    plain = pipe(img).images[0]
    assert np.abs(np.asarray(out, np.int16) - np.asarray(plain, np.int16)).max() > 0, "the caption changed nothing"
    # 'np' is float32 [N, R, R, 3] in [0, 1] (as diffusers'), not uint8; return_dict=False gives to_tuple().
    arr, lr_images, notes, faces = pipe(img, output_type="np", return_dict=False)
    assert arr.dtype == np.float32 and arr.shape == (1, 64, 64, 3) and 0 <= arr.min() and arr.max() <= 1
    assert np.abs(arr[0] * 255 - np.asarray(plain, np.float32)).max() <= 0.5 + 1e-3
    assert lr_images.shape == (1, 3, 16, 16) and notes == [""] and faces is None


def test_upscale_folder_resumes_and_reports_bad_files(cli, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _png(src / "a.png", (16, 16))
    _png(src / "sub" / "b.jpg", (24, 20), seed=1)      # not square: centre-cropped with a note
    _png(src / "big.png", (100, 100), seed=2)          # larger than the 64 px output: refused
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = cli("upscale", src, out, "--prompt", "a blue star with dots", "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    assert Image.open(out / "a.png").size == (64, 64) and Image.open(out / "sub" / "b.png").size == (64, 64)
    assert not (out / "big.png").exists() and not (out / "sub" / "broken.png").exists()
    errors = [json.loads(line) for line in (out / "hdvila-errors.jsonl").read_text().splitlines()]
    assert sorted(e["input"].split("/")[-1] for e in errors) == ["big.png", "broken.png"]
    assert "larger than" in next(e["error"] for e in errors if e["input"].endswith("big.png"))
    assert "centre-cropped" in r.stderr
    before = (out / "a.png").stat().st_mtime_ns
    r = cli("upscale", src, out, "--prompt", "a blue star with dots", "--quiet")
    assert "0 file(s)" in r.stdout and "2 already done" in r.stdout
    assert (out / "a.png").stat().st_mtime_ns == before
    r = cli("upscale", src, out, "--quiet")  # another caption: the outputs are not this run's, and are kept
    assert r.returncode == 1 and "0 already done" in r.stdout and "caption 'a blue star with dots' there" in r.stderr
    assert (out / "a.png").stat().st_mtime_ns == before
    (src / "big.png").unlink()
    (src / "sub" / "broken.png").unlink()
    r = cli("upscale", src, out, "--quiet", "--overwrite")
    assert r.returncode == 0 and "upscaled 2 file(s)" in r.stdout
    assert not (out / "hdvila-errors.jsonl").exists(), "a clean rerun keeps a stale errors report"


def test_upscale_errors_name_each_file_once(cli, tmp_path):
    """``hdvila upscale`` prints one ``error:`` line per bad file naming it once (not
    ``error: x.png: x.png: image is 8000x6000 ...``); the note on a resized frame names it once too."""
    from tests.conftest import assert_errors_name_each_file_once, png_header as _png_header

    src, out = tmp_path / "in", tmp_path / "out"
    _png(src / "odd.png", (24, 20))                     # centre-cropped, with a note
    _png(src / "big.png", (100, 100), seed=2)           # larger than the 64 px output
    _png_header(src / "huge.png", 8000, 6000)           # over 40 MP, refused from its header
    (src / "notes.png").write_text("not a picture\n")
    r = cli("upscale", src, out, "--quiet")
    assert r.returncode == 1 and "3 failed" in r.stdout, r.stdout + r.stderr
    assert_errors_name_each_file_once(r, src, {"big.png": "larger than this model's 64x64 output",
                                               "huge.png": "image is 8000x6000 = 48,000,000 pixels",
                                               "notes.png": "not a recognised image"})
    note = next(line for line in r.stderr.splitlines() if line.startswith("note:"))
    assert note.count("odd.png") == 1 and "centre-cropped" in note, note


def test_upscale_video_and_captions_file(cli, tmp_path):
    import torch

    from hdvila.videoio import write_video

    frames = torch.rand(5, 3, 16, 16) * 2 - 1
    video = write_video(tmp_path / "clip.mp4", frames, fps=10)
    r = cli("upscale", video, tmp_path / "up.mp4", "--quiet")
    assert r.returncode == 0, r.stderr
    import decord

    vr = decord.VideoReader(str(tmp_path / "up.mp4"))
    assert len(vr) == 5 and vr[0].shape == (64, 64, 3) and abs(vr.get_avg_fps() - 10) < 0.5

    src = tmp_path / "imgs"
    _png(src / "x.png", (16, 16))
    _png(src / "y.png", (16, 16))
    (src / "caps.csv").write_text("image;caption\nx.png;a red square with stripes\ny.png;a red square\n")
    r = cli("upscale", src, tmp_path / "o", "--captions", src / "caps.csv", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "x.png").is_file() and (tmp_path / "o" / "y.png").is_file()
    assert "names none" not in r.stderr
    assert json.loads((tmp_path / "o" / "x.png.json").read_text())["caption"] == "a red square with stripes"
    (src / "other.csv").write_text("image;caption\nz.png;a red square\n")  # names none of the inputs: a warning
    r = cli("upscale", src, tmp_path / "o2", "--captions", src / "other.csv", "--quiet")
    assert r.returncode == 0 and "warning: --captions" in r.stderr and "names none of the 2 input" in r.stderr


def test_upscale_refuses_bad_options(cli, tmp_path):
    img = _png(tmp_path / "a.png", (16, 16))
    r = cli("upscale", img, tmp_path / "a.gif")
    assert r.returncode == 2 and "must end in" in r.stderr
    r = cli("upscale", img, tmp_path / "o.png", "--scale", "8")  # refused before any file
    assert r.returncode == 2 and "x8" in r.stderr and not (tmp_path / "o.png.errors.jsonl").exists()
    r = cli("upscale", img, tmp_path / "o.png", "--scale", "0")  # not taken for "the model's scale"
    assert r.returncode == 2 and "x0" in r.stderr and not (tmp_path / "o.png").exists()
    r = cli("upscale", img, tmp_path / "o.png", "--prompt", "  ")
    assert r.returncode == 2 and "empty" in r.stderr
    r = cli("upscale", img, tmp_path / "o.png", "--model", tmp_path / "nope")
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr


def test_eval_sr_reports_every_mode(cli, tmp_path):
    r = cli("eval-sr", "--num", "8", "--json", "-", "--figure", tmp_path / "fig.png")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res["modes"]) == {"bicubic", "no_text", "text", "wrong"} and res["crop_border"] == 4
    for row in res["modes"].values():
        assert 10 < row["psnr_rgb"] < 60 and 0 < row["ssim_y"] <= 1
        assert set(row["judge_accuracy"]) == {"shape", "color", "background", "size", "pattern"}
    assert 0 <= res["modes"]["wrong"]["follows_caption_pattern"] <= 1
    fig = Image.open(tmp_path / "fig.png")
    assert fig.size[0] > 6 * 64 and fig.size[1] > 8 * 64  # 6 columns, 8 rows


def test_upscale_tiny_is_refused_and_16_bit_is_read_at_its_scale(cli, tmp_path):
    Image.new("RGB", (3, 3), (10, 20, 30)).save(tmp_path / "tiny.png")
    r = cli("upscale", tmp_path / "tiny.png", tmp_path / "tiny_x4.png", "--quiet")
    assert r.returncode == 1 and "too small" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "tiny_x4.png").exists()
    grey = np.full((16, 16), 40000, np.uint16)  # 16-bit grey: 40000 / 257 = 155.6 in 8 bits
    Image.fromarray(grey).save(tmp_path / "deep.png")
    r = cli("upscale", tmp_path / "deep.png", tmp_path / "deep_x4.png", "--quiet")
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "deep_x4.png"), np.float64)
    assert out.shape == (64, 64, 3) and abs(out.mean() - 40000 / 257) < 12  # not clipped to 255
