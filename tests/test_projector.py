"""StyleGAN2 projector: recovering an image the generator made, and the `hdvila invert` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from generation.stylegan2 import Generator, StyleGAN2Config
from generation.stylegan2.projector import (
    LATENT_FILE,
    RECONSTRUCTION_FILE,
    TARGET_FILE,
    load_latent,
    multiscale_loss,
    noise_regularization,
    project,
    project_batch,
    psnr,
    synthesize,
    w_statistics,
)
from hdvila.errors import UserError


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """As many threads as the machine has idle cores (a busy 2-core machine is many times slower
    with 2 threads than with 1); restored afterwards."""
    from hdvila.device import suggested_cpu_threads

    before = torch.get_num_threads()
    torch.set_num_threads(suggested_cpu_threads())
    yield
    torch.set_num_threads(before)


def _tiny_generator(seed: int = 0, resolution: int = 16) -> Generator:
    torch.manual_seed(seed)
    cfg = StyleGAN2Config(z_dim=32, w_dim=32, img_resolution=resolution, mapping_layers=2,
                          channel_base=resolution * 32, channel_max=32)
    return Generator(cfg).eval()


@pytest.fixture(scope="module")
def generated():
    """A tiny random G and an image it made from a known w (constant noise)."""
    G = _tiny_generator()
    with torch.no_grad():
        w = G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(5)), None)
        target = G.synthesis(w, noise_mode="const").clamp(-1, 1)
    return G, w, target


def test_projection_recovers_generated_image(generated):
    G, _, target = generated
    before = {k: v.clone() for k, v in G.state_dict().items()}
    w_avg, _ = w_statistics(G, 2000)
    start = psnr(synthesize(G, w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)).clamp(-1, 1), target)

    results = {space: project(G, target, space=space, steps=40, perceptual="multiscale", w_avg_samples=2000)
               for space in ("w", "w+")}
    w_res, wp_res = results["w"], results["w+"]
    for r in (w_res, wp_res):
        assert r.ws.shape == (1, G.num_ws, 32) and r.reconstruction.shape == (1, 3, 16, 16)
        assert r.reconstruction.min() >= -1 and r.reconstruction.max() <= 1
        assert "multi-scale" in r.loss and "mse" in r.loss and r.steps == 40 and r.time_s > 0
        assert len(r.history) == 40 and all(np.isfinite(r.history))
        # Noise maps stay normalised (zero mean, unit variance) and the reconstruction is reproducible.
        for n in r.noise.values():
            assert abs(float(n.mean())) < 1e-4 and float(n.square().mean()) == pytest.approx(1, abs=1e-3)
        assert psnr(synthesize(G, r.ws, r.noise).clamp(-1, 1), target) == pytest.approx(r.psnr, abs=1e-6)
    assert torch.equal(w_res.ws, w_res.ws[:, :1].expand_as(w_res.ws))  # W: one vector broadcast to all layers
    assert w_res.w.shape == (1, 32) and wp_res.w is None
    assert not torch.equal(wp_res.ws, wp_res.ws[:, :1].expand_as(wp_res.ws))

    # Starting at ~11 dB (the average w), 40 steps reach > 20 dB in W+ and W+ is at least as good as W.
    assert start < 14
    assert wp_res.psnr > 20 and w_res.psnr > start + 5
    assert wp_res.psnr >= w_res.psnr - 0.25
    # G itself was not modified (the projector works on a copy).
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())


def test_batched_projection_equals_one_image_at_a_time(generated):
    """project_batch runs independent optimisations: image i with seed s gives what project gives
    for it alone with seed s, and the seeds matter."""
    G = generated[0]
    with torch.no_grad():
        w = G.mapping(torch.randn(3, 32, generator=torch.Generator().manual_seed(7)), None)
        targets = G.synthesis(w, noise_mode="const").clamp(-1, 1)
    kw = dict(steps=25, perceptual="multiscale", w_avg_samples=2000)
    batch = project_batch(G, targets, seeds=[0, 1, 2], **kw)
    assert len(batch) == 3
    for i, rb in enumerate(batch):
        alone = project(G, targets[i:i + 1], seed=i, **kw)
        assert rb.ws.shape == alone.ws.shape == (1, G.num_ws, 32) and rb.reconstruction.shape == (1, 3, 16, 16)
        assert torch.allclose(rb.ws, alone.ws, atol=1e-4)
        assert all(torch.allclose(rb.noise[k], alone.noise[k], atol=1e-4) for k in alone.noise)
        assert rb.psnr == pytest.approx(alone.psnr, abs=0.01) and len(rb.history) == 25
        assert psnr(synthesize(G, rb.ws, rb.noise).clamp(-1, 1), targets[i:i + 1]) == pytest.approx(rb.psnr, abs=1e-6)
    other_seed = project(G, targets[:1], seed=5, **kw)
    assert not torch.allclose(other_seed.ws, batch[0].ws, atol=1e-3)
    with pytest.raises(UserError, match="2 seeds for 3 images"):
        project_batch(G, targets, seeds=[0, 1], steps=1)
    with pytest.raises(UserError, match="project_batch"):
        project(G, targets, steps=1)


def test_projection_input_checks(generated):
    G, _, target = generated
    with pytest.raises(UserError, match="must be \\[1, 3, 16, 16\\]"):
        project(G, torch.zeros(1, 3, 32, 32), steps=1)
    with pytest.raises(UserError, match="'w' or 'w\\+'"):
        project(G, target, space="z", steps=1)
    with pytest.raises(UserError, match="LPIPS needs"):
        project(G, target, steps=1, perceptual="lpips")  # no AlexNet weights on this machine


def test_loss_pieces():
    white = [torch.randn(64, 64, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.nn.functional.interpolate(torch.randn(1, 1, 8, 8), size=64, mode="bilinear")[0, 0]]
    smooth = [(s - s.mean()) / s.std() for s in smooth]
    assert noise_regularization(white) < 1e-3 < noise_regularization(smooth)
    # A batch of maps [N, H, W] gives each map's own value.
    both = noise_regularization([torch.stack([white[0], smooth[0]])])
    assert both.shape == (2,) and torch.allclose(both, torch.stack([noise_regularization(white),
                                                                     noise_regularization(smooth)]))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.stack([x[0], x[1].flip(2)])
    assert multiscale_loss(x, x).tolist() == [0, 0]
    per_image = multiscale_loss(x, y)
    assert per_image.shape == (2,) and per_image[0] == 0 and per_image[1] > 0
    x = x[:1]
    assert psnr(x, x) == float("inf")
    y = x.clone()
    y[0, 0, 0, 0] = -x[0, 0, 0, 0]  # one wrong value out of 3072
    err = (float(((x[0, 0, 0, 0] + 1) * 127.5).round()) - float(((y[0, 0, 0, 0] + 1) * 127.5).round())) ** 2 / x.numel()
    assert psnr(x, y) == pytest.approx(10 * np.log10(255 ** 2 / err), rel=1e-6)


def test_invert_cli(cli, tmp_path, monkeypatch, generated):
    G, _, target = generated
    gen_dir = tmp_path / "gen"
    G.save_pretrained(gen_dir)
    image = tmp_path / "photo.png"  # 24x20: centre-cropped to 20x20, resized to 16x16
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    proc = cli("invert", image, out, "--generator", gen_dir, "--steps", "3", "--space", "w", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert "PSNR" in proc.stdout and "dB" in proc.stdout and "[0, 255]" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([LATENT_FILE, RECONSTRUCTION_FILE, TARGET_FILE])
    assert Image.open(out / RECONSTRUCTION_FILE).size == (16, 16) and Image.open(out / TARGET_FILE).size == (16, 16)
    ws, noise, meta = load_latent(out / LATENT_FILE)
    assert ws.shape == (1, G.num_ws, 32) and meta["space"] == "w" and noise
    assert float(meta["psnr_db"]) == pytest.approx(float(proc.stdout.split("PSNR ")[1].split(" dB")[0]), abs=0.01)
    assert "note: photo.png: 24x20 px is not the generator's 16x16; centre-cropped to 20x20" in proc.stdout

    # The input policy of hdvila edit: a 1x1 px image and a 4000x8 px strip are refused in one line.
    for name, (w, h), says in (("dot.png", (1, 1), "too small to invert"), ("strip.png", (4000, 8), "500:1")):
        Image.new("RGB", (w, h), (200, 10, 10)).save(tmp_path / name)
        proc = cli("invert", tmp_path / name, tmp_path / "out_policy", "--generator", gen_dir, "--steps", "2")
        assert proc.returncode == 2 and says in proc.stderr and name in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out_policy").exists()

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out_bad = tmp_path / "out_bad"
    proc = cli("invert", bad, out_bad, "--generator", gen_dir, "--steps", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "broken.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr and not out_bad.exists()

    monkeypatch.setenv("HDVILA_CHECKPOINTS", str(tmp_path / "no_checkpoints"))
    proc = cli("invert", image, out_bad, "--steps", "2")
    assert proc.returncode == 2 and "--generator" in proc.stderr and not out_bad.exists()


def test_texture_and_foreground_terms_enter_the_loss_as_documented(generated):
    """project_batch's texture_weight and foreground_weight: the first step's loss (from given latents,
    stored noise, no latent noise) is the weighted MSE + multi-scale L1 + texture loss, by hand."""
    from generation.stylegan2.projector import foreground_mask, texture_loss

    G, w, target = generated
    ws = w + 0.3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))  # [1, num_ws, w_dim]
    kw = dict(steps=1, init_ws=ws, stored_noise=True, initial_noise_factor=0.0, perceptual="multiscale",
              w_avg_samples=100)
    plain = project_batch(G, target, **kw)[0]
    both = project_batch(G, target, texture_weight=2.0, foreground_weight=3.0, **kw)[0]
    with torch.no_grad():
        rec = synthesize(G, ws).float()
    weight = 1 + 3.0 * foreground_mask(target)
    ms = multiscale_loss(rec, target)[0]
    want = ((rec - target).square() * weight).mean() + ms + 2.0 * texture_loss(rec, target)[0]
    assert both.history[0] == pytest.approx(float(want), rel=1e-4)
    assert plain.history[0] == pytest.approx(float((rec - target).square().mean() + multiscale_loss(rec, target)[0]),
                                             rel=1e-4)
    assert "texture x2" in both.loss and "x4" in both.loss and "texture" not in plain.loss
    assert foreground_mask(target).sum() > 0  # the term is not vacuous on this image
