"""FD-HDVILA, the judge-free checkpoint-selection metric: the Fréchet distance itself and its features."""

import numpy as np
import pytest
import scipy.linalg
import torch

from generation.stylegan2.metrics import frechet_distance


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def test_frechet_distance_matches_the_textbook_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g) @ torch.randn(8, 8, generator=g)
    b = torch.randn(300, 8, generator=g) * 0.5 + 1.0
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a.numpy().astype(np.float64), b.numpy().astype(np.float64)),
                                                   rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_1d_gaussians():
    # (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 for one dimension
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    a, b = (x * 2 + 3)[:, None], (x * 0.5 - 1)[:, None]
    sa, sb = float(a.std()), float(b.std())
    assert frechet_distance(a, b) == pytest.approx(16 + (sa - sb) ** 2, rel=1e-9)


def test_fd_hdvila_separates_renders_from_noise():
    from generation.stylegan2.metrics import image_features, load_feature_model, real_images

    model = load_feature_model()
    real = image_features(model, real_images(64, 64))
    other = image_features(model, real_images(64, 64, seed=7))
    noise = image_features(model, torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert frechet_distance(other, real) * 5 < frechet_distance(noise, real)


def _plot_fd_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "plot_fd.py"
    spec = importlib.util.spec_from_file_location("plot_fd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_fd_draws_each_run_and_refuses_bad_logs(tmp_path, capsys):
    import json

    from PIL import Image

    plot_fd = _plot_fd_module()
    for name, fds in (("a", [0.4, 0.3, 0.25]), ("b", [0.2, 0.1])):
        (tmp_path / name).mkdir()
        rows = [{"step": 500 * (i + 1), "kimg": 8.0 * (i + 1), "fd_hdvila": fd} for i, fd in enumerate(fds)]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # a resumed run re-logs a step: the later value wins
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 1000, "kimg": 16.0, "fd_hdvila": 0.05}) + "\n")
    assert plot_fd.read_series(tmp_path / "b") == [(8.0, 0.2), (16.0, 0.05)]

    out = tmp_path / "fd.png"
    assert plot_fd.main([str(tmp_path / "a"), f"{tmp_path / 'b'}:second", "--floor", "0.01", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (540, 900, 3)
    for colour in plot_fd.COLOURS[:2]:  # both series are drawn
        assert (img == np.array(colour, dtype=np.uint8)).all(-1).sum() > 50

    (tmp_path / "a" / "metrics.jsonl").write_text('{"kimg": 8}\n')
    bad = tmp_path / "bad.png"
    assert plot_fd.main([str(tmp_path / "a"), "--out", str(bad)]) == 2
    assert "metrics.jsonl:1" in capsys.readouterr().err and not bad.exists()
    assert plot_fd.main([str(tmp_path / "missing"), "--out", str(bad)]) == 2
    assert "--fd_steps" in capsys.readouterr().err and not bad.exists()


def test_judge_curve_reads_each_snapshot(tmp_path, monkeypatch, capsys):
    import importlib.util
    import json
    from pathlib import Path

    from generation.stylegan2 import Generator, StyleGAN2Config

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    monkeypatch.syspath_prepend(str(scripts))
    spec = importlib.util.spec_from_file_location("judge_curve", scripts / "judge_curve.py")
    judge_curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judge_curve)

    ema = tmp_path / "ema"
    for step in (2000, 3000, 4000):
        torch.manual_seed(step)
        G = Generator(StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=64, mapping_layers=2,
                                      channel_base=256, channel_max=16))
        G.save_pretrained(ema / f"step-{step}")
    (ema / "notes").mkdir()
    assert [s for s, _ in judge_curve.snapshots(ema, 2000)] == [2000, 4000]

    out, js = tmp_path / "curve.png", tmp_path / "curve.jsonl"
    argv = [str(ema), "--batch", "16", "--every", "2000", "--samples", "24", "--json", str(js), "--out", str(out)]
    assert judge_curve.main(argv) == 0
    rows = [json.loads(line) for line in js.read_text().splitlines()]
    assert [(r["step"], r["kimg"]) for r in rows] == [(2000, 32.0), (4000, 64.0)]
    assert all(0.0 <= r["confident_all_attributes"] <= 1.0 and set(r["tv_distance"]) == set(r["class_shares"])
               for r in rows)
    assert out.is_file()

    # rows already in the file for the same --samples are kept (a marked row survives), new steps added
    rows[0]["confident_all_attributes"] = 0.123
    js.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert judge_curve.main([*argv[:4], "1000", *argv[5:]]) == 0
    again = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["step"] for r in again] == [2000, 3000, 4000]
    assert again[0]["confident_all_attributes"] == 0.123 and again[2] == rows[1]
    printed = capsys.readouterr().out
    assert "step 3000" in printed and "step 2000" not in printed and "step 4000" not in printed
    # another --samples recomputes every row
    assert judge_curve.main([*argv[:6], "16", *argv[7:]]) == 0
    assert all(r["samples"] == 16 for r in map(json.loads, js.read_text().splitlines()))
    assert judge_curve.main([str(ema), "--batch", "16", "--every", "5000", "--json", str(js), "--out", str(out)]) == 2
    assert "no step-N folders" in capsys.readouterr().err
