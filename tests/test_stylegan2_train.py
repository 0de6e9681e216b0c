"""StyleGAN2 training: the Accelerate script end to end on a tiny model (16 px), exact resume,
a 2-process gloo run, image-folder data, and the loss/regulariser/augmentation pieces."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config, losses as L
from generation.stylegan2.augment import AdaptiveAugment, AugmentPipe, parse_ops
from hdvila.errors import UserError
from hdvila.training import EMA

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "generation" / "train_stylegan2.py"
TINY = ["--resolution", "16", "--channel_base", "256", "--channel_max", "32", "--z_dim", "32", "--w_dim", "32",
        "--mapping_layers", "2", "--train_batch_size", "4", "--num_validation_images", "4", "--num_threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    """The script sets torch's thread count (--num_threads 1 here); give other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _train(*args: str) -> dict:
    from generation.train_stylegan2 import main

    return main([*map(str, args)])


def _same_tensors(a: Path, b: Path) -> bool:
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_train_checkpoints_resume_and_outputs(tmp_path):
    """4 steps with checkpoints every 2 (limit 1), resume to 6 == a straight 6-step run, bit for bit."""
    common = [*TINY, "--train_size", "24", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1",
              "--augment", "all", "--augment_p", "0.5", "--seed", "3"]
    run_a, run_b = tmp_path / "a", tmp_path / "b"

    first = _train(*common, "--output_dir", run_a, "--max_train_steps", "4", "--validation_steps", "2")
    assert sorted(p.name for p in run_a.glob("checkpoint-*")) == ["checkpoint-4"]  # checkpoint-2 pruned
    assert not list(run_a.glob(".tmp-*"))
    ckpt = run_a / "checkpoint-4"
    for name in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin",
                 "random_states_0.pkl", "training_state.json", "generator_ema/config.json",
                 "generator_ema/model.safetensors"):
        assert (ckpt / name).is_file(), name
    for step in (2, 4):
        grid = Image.open(run_a / "samples" / f"step-{step:06d}.png")
        assert grid.size == (2 * 18 + 2, 2 * 18 + 2)  # 4 images of 16 px in a 2x2 grid with 2 px padding
    assert list((run_a / "logs").rglob("events.out.tfevents.*"))

    history = first["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    for h in history:
        for key in ("loss_G", "loss_D_fake", "loss_D_real", "score_real", "score_fake"):
            assert math.isfinite(h[key]), (key, h)
    # Lazy regularisers: R1 (interval 16) and path length (interval 4) both run on step index 0.
    assert history[0]["r1_penalty"] > 0 and history[0]["pl_penalty"] > 0 and history[0]["pl_length"] > 0
    assert all("r1_penalty" not in h and "pl_penalty" not in h for h in history[1:])
    assert history[0]["ema_beta"] == 0.0 and 0 < history[-1]["ema_beta"] < 1  # EMA ramp-up: first step copies

    G = Generator.from_pretrained(run_a / "generator")
    assert G.img_resolution == 16 and G.z_dim == 32
    with torch.no_grad():
        img = G(torch.randn(2, 32))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    Discriminator.from_pretrained(run_a / "discriminator")
    assert _same_tensors(run_a / "generator" / "model.safetensors", ckpt / "generator_ema" / "model.safetensors")

    resumed = _train(*common, "--output_dir", run_a, "--max_train_steps", "6", "--validation_steps", "0",
                     "--resume_from_checkpoint", "latest")
    assert [h["step"] for h in resumed["history"]] == [5, 6]
    assert resumed["history"][0]["pl_penalty"] > 0  # step index 4: path length again
    assert sorted(p.name for p in run_a.glob("checkpoint-*")) == ["checkpoint-6"]

    straight = _train(*common, "--output_dir", run_b, "--max_train_steps", "6", "--validation_steps", "0")
    for h_straight, h_resumed in zip(straight["history"][4:], resumed["history"]):
        assert h_straight["loss_G"] == h_resumed["loss_G"] and h_straight["loss_D_real"] == h_resumed["loss_D_real"]
    for rel in ("generator/model.safetensors", "discriminator/model.safetensors",
                "checkpoint-6/generator_ema/model.safetensors", "checkpoint-6/model.safetensors"):
        assert _same_tensors(run_a / rel, run_b / rel), rel


def test_resume_refuses_other_model_settings(tmp_path):
    _train(*TINY, "--train_size", "8", "--output_dir", tmp_path, "--max_train_steps", "1",
           "--checkpointing_steps", "1", "--validation_steps", "0", "--report_to", "none")
    args = [a if a != "256" else "512" for a in TINY]  # another channel_base
    with pytest.raises(UserError, match="--channel_base 256"):
        _train(*args, "--train_size", "8", "--output_dir", tmp_path, "--max_train_steps", "2",
               "--resume_from_checkpoint", "latest", "--report_to", "none")
    with pytest.raises(UserError, match="no such checkpoint"):
        _train(*TINY, "--train_size", "8", "--output_dir", tmp_path, "--max_train_steps", "2",
               "--resume_from_checkpoint", "checkpoint-99", "--report_to", "none")


def test_resume_takes_the_new_learning_rate(tmp_path):
    """The saved optimizer states come back with their moments, but this command's rates apply."""
    common = [*TINY, "--train_size", "8", "--output_dir", tmp_path, "--checkpointing_steps", "1",
              "--validation_steps", "0", "--report_to", "none"]
    _train(*common, "--max_train_steps", "1")
    _train(*common, "--max_train_steps", "2", "--resume_from_checkpoint", "latest", "--learning_rate", "0.001",
           "--d_lr", "0.0005")
    for name, lr, interval in (("optimizer.bin", 0.001, 4), ("optimizer_1.bin", 0.0005, 16)):
        saved = torch.load(tmp_path / "checkpoint-2" / name, weights_only=True)
        c = L.lazy_regularization_ratio(interval)
        assert saved["state"], name  # the moments were kept
        for group in saved["param_groups"]:
            assert group["lr"] == pytest.approx(lr * c) and tuple(group["betas"]) == pytest.approx((0.0, 0.99 ** c))


def test_init_from_weights_without_optimizer_states(tmp_path):
    """--init_from: a checkpoint copied without its optimizer files starts a new run from its
    weights and counters (fresh Adam states); a folder missing weights is refused."""
    import shutil

    common = [*TINY, "--train_size", "8", "--validation_steps", "0", "--report_to", "none"]
    _train(*common, "--output_dir", tmp_path / "a", "--max_train_steps", "3", "--checkpointing_steps", "3")
    init = tmp_path / "carried"
    init.mkdir()
    for name in ("model.safetensors", "model_1.safetensors", "training_state.json", "generator_ema"):
        src = tmp_path / "a" / "checkpoint-3" / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, init / name)

    result = _train(*common, "--output_dir", tmp_path / "b", "--max_train_steps", "3", "--checkpointing_steps", "0",
                    "--init_from", init)
    assert result["global_step"] == 3 and result["history"] == []  # the counters came along: nothing left to do
    assert _same_tensors(tmp_path / "b" / "generator" / "model.safetensors",
                         init / "generator_ema" / "model.safetensors")
    assert _same_tensors(tmp_path / "b" / "discriminator" / "model.safetensors", tmp_path / "a" / "discriminator" /
                         "model.safetensors")
    more = _train(*common, "--output_dir", tmp_path / "c", "--max_train_steps", "5", "--checkpointing_steps", "0",
                  "--init_from", init)
    assert [h["step"] for h in more["history"]] == [4, 5] and more["history"][-1]["kimg"] == pytest.approx(0.02)
    assert not _same_tensors(tmp_path / "c" / "generator" / "model.safetensors",
                             init / "generator_ema" / "model.safetensors")

    (init / "model_1.safetensors").unlink()
    with pytest.raises(UserError, match="missing model_1.safetensors"):
        _train(*common, "--output_dir", tmp_path / "d", "--max_train_steps", "4", "--init_from", init)


def test_init_from_a_narrower_checkpoint_widens_it(tmp_path):
    """--init_from a checkpoint with a smaller --channel_base: G, D and the EMA G are widened to the
    same function (generation/stylegan2/widen.py) and training goes on; other changes are refused."""
    from generation.stylegan2 import Generator

    common = [*TINY[:2], *TINY[4:], "--train_size", "8", "--validation_steps", "0", "--report_to", "none",
              "--checkpointing_steps", "0"]  # TINY without its --channel_base 256
    _train(*common, "--channel_base", "256", "--output_dir", tmp_path / "a", "--max_train_steps", "3",
           "--checkpointing_steps", "3")
    init = tmp_path / "a" / "checkpoint-3"
    result = _train(*common, "--channel_base", "512", "--output_dir", tmp_path / "b", "--max_train_steps", "3",
                    "--init_from", init)
    assert result["global_step"] == 3 and result["history"] == []
    narrow = Generator.from_pretrained(init / "generator_ema").eval()
    wide = Generator.from_pretrained(tmp_path / "b" / "generator").eval()
    assert wide.config.channel_base == 512 and wide.synthesis.b16.conv1.weight.shape[0] == 32
    assert narrow.synthesis.b16.conv1.weight.shape[0] == 16
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(wide(z, None, noise_mode="const"), narrow(z, None, noise_mode="const"),
                                   atol=1e-5, rtol=1e-4)
    more = _train(*common, "--channel_base", "512", "--output_dir", tmp_path / "c", "--max_train_steps", "5",
                  "--init_from", init)
    assert [h["step"] for h in more["history"]] == [4, 5]
    with pytest.raises(UserError, match="cannot widen it.*minibatch-std"):  # D's 4x4 channels would change
        _train(*common, "--channel_base", "512", "--channel_max", "64", "--output_dir", tmp_path / "e",
               "--max_train_steps", "4", "--init_from", init)
    with pytest.raises(UserError, match="--w_dim 32 \\(now 16\\)"):
        _train(*common, "--channel_base", "512", "--w_dim", "16", "--output_dir", tmp_path / "d",
               "--max_train_steps", "4", "--init_from", init)


def test_init_from_model_folders_with_d_warmup(tmp_path):
    """--init_from a generator model folder (the bundled layout: D in its discriminator/ subfolder, or
    --init_discriminator): G and EMA G start from it, counters at 0, no EMA ramp-up; --d_warmup_steps
    holds G still while D trains, also across a resume; other settings are refused by name."""
    from generation.stylegan2.export import export_checkpoint
    from generation.stylegan2.training_init import load_model_folders

    common = [*TINY, "--train_size", "8", "--validation_steps", "0", "--report_to", "none"]
    _train(*common, "--output_dir", tmp_path / "a", "--max_train_steps", "2", "--checkpointing_steps", "2")
    gen, disc = tmp_path / "a" / "generator", tmp_path / "a" / "discriminator"
    bundled = export_checkpoint(tmp_path / "a" / "checkpoint-2", tmp_path / "bundled").out  # EMA G, D in discriminator/
    assert load_file(str(bundled / "discriminator" / "model.safetensors"))["b4.out.weight"].dtype == torch.float16

    model = {"resolution": 16, "z_dim": 32, "w_dim": 32, "mapping_layers": 2, "channel_base": 256, "channel_max": 32,
             "mbstd_group_size": 4, "num_fp16_res": 0, "conv_clamp": None}
    G, D = load_model_folders(bundled, None, model)
    for net, source in ((G, gen), (D, disc)):  # the final networks of run a, as stored in fp16
        want = load_file(str(source / "model.safetensors"))
        assert all(torch.equal(v, want[k].half().float()) for k, v in net.state_dict().items() if k in want)
    assert load_model_folders(gen, None, model)[1] is None  # no discriminator/ there: D starts fresh
    with pytest.raises(UserError, match="not a checkpoint of train_stylegan2"):
        export_checkpoint(gen, tmp_path / "x")

    # Warm-up for 3 steps, stopped after 2 and resumed: G changes only from step 4 on.
    warm = [*common, "--output_dir", tmp_path / "b", "--init_from", bundled, "--d_warmup_steps", "3",
            "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest"]
    first = _train(*warm, "--max_train_steps", "2")
    assert [("loss_G" in h) for h in first["history"]] == [False, False]
    held = load_file(str(tmp_path / "b" / "generator" / "model.safetensors"))
    assert all(torch.equal(v, held[k]) for k, v in G.state_dict().items())
    assert not torch.equal(load_file(str(tmp_path / "b" / "discriminator" / "model.safetensors"))["b4.out.weight"],
                           D.state_dict()["b4.out.weight"])
    assert first["history"][0]["ema_beta"] == pytest.approx(0.5 ** (4 / (4 * 10 / 32 * 1000)))  # no ramp-up
    second = _train(*warm, "--max_train_steps", "4")
    assert [(h["step"], "loss_G" in h) for h in second["history"]] == [(3, False), (4, True)]
    moved = load_file(str(tmp_path / "b" / "generator" / "model.safetensors"))
    assert not all(torch.equal(v, moved[k]) for k, v in G.state_dict().items())

    other = _train(*common, "--output_dir", tmp_path / "c", "--max_train_steps", "1", "--checkpointing_steps", "0",
                   "--init_from", gen, "--init_discriminator", disc)
    assert "loss_G" in other["history"][0] and other["history"][0]["kimg"] == pytest.approx(0.004)
    # --init_from a checkpoint taken during a warm-up starts a new run with this command's warm-up (none)
    after = _train(*common, "--output_dir", tmp_path / "g", "--max_train_steps", "3", "--checkpointing_steps", "0",
                   "--init_from", tmp_path / "b" / "checkpoint-2")
    assert [(h["step"], "loss_G" in h) for h in after["history"]] == [(3, True)]

    with pytest.raises(UserError, match="w_dim 32 \\(this run: 16\\)"):
        _train(*common, "--w_dim", "16", "--output_dir", tmp_path / "d", "--max_train_steps", "1",
               "--init_from", bundled)
    with pytest.raises(UserError, match="goes with --init_from GENERATOR_FOLDER"):
        _train(*common, "--output_dir", tmp_path / "f", "--max_train_steps", "1",
               "--init_from", tmp_path / "a" / "checkpoint-2", "--init_discriminator", disc)
    with pytest.raises(UserError, match="holds a model of type 'stylegan2_generator'"):
        _train(*common, "--output_dir", tmp_path / "e", "--max_train_steps", "1", "--init_from", gen,
               "--init_discriminator", gen)


def test_time_limit_stops_and_saves_a_checkpoint(tmp_path):
    result = _train(*TINY, "--train_size", "8", "--output_dir", tmp_path, "--max_train_steps", "50",
                    "--max_train_minutes", "1e-6", "--checkpointing_steps", "10", "--validation_steps", "0",
                    "--report_to", "none", "--gradient_accumulation_steps", "2", "--dataloader_num_workers", "1")
    assert result["global_step"] == 1
    assert result["history"][0]["kimg"] == pytest.approx(0.008)  # 2 micro-batches of 4 images
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1"]
    assert (tmp_path / "generator" / "model.safetensors").is_file()
    assert sorted(tmp_path.joinpath("samples").iterdir())[-1].name == "step-000001.png"


def test_fd_hdvila_is_tracked_on_the_ema_generator(tmp_path):
    import json

    from generation.data import UInt8ImageDataset, render_demo_images
    from generation.stylegan2.metrics import FDTracker

    _train(*TINY, "--train_size", "8", "--output_dir", tmp_path, "--max_train_steps", "3", "--fd_steps", "2",
           "--fd_samples", "8", "--checkpointing_steps", "0", "--validation_steps", "0", "--report_to", "none")
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]  # every 2 steps and at the end
    assert all(math.isfinite(r["fd_hdvila"]) and r["fd_hdvila"] > 0 for r in rows)
    # The last row is the saved EMA generator against the (evenly spaced) training images.
    data = UInt8ImageDataset(render_demo_images(8, 16, seed=0, cache_file=None))
    again = FDTracker(data, 8)(Generator.from_pretrained(tmp_path / "generator"))
    assert again == pytest.approx(rows[-1]["fd_hdvila"], rel=1e-4)


def test_image_folder_bad_files(tmp_path):
    data = tmp_path / "images"
    (data / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):  # non-square and in a subfolder: centre-cropped and resized
        Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(data / "sub" / f"ok{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    with pytest.raises(UserError) as err:
        _train(*TINY, "--data", data, "--output_dir", out, "--max_train_steps", "1", "--report_to", "none")
    msg = str(err.value)
    assert "2 of 5 images" in msg and "broken.png" in msg and "empty.jpg" in msg and "--skip_bad_images" in msg
    assert not (out / "generator").exists() and not list(out.glob("checkpoint-*"))

    with pytest.warns(UserWarning, match="skipping 2 of 5"):
        result = _train(*TINY, "--data", data, "--skip_bad_images", "--output_dir", out, "--max_train_steps", "1",
                        "--validation_steps", "0", "--checkpointing_steps", "0", "--report_to", "none")
    assert result["global_step"] == 1 and (out / "generator" / "model.safetensors").is_file()


def test_two_process_gloo_run(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): DDP keeps G and D identical on both."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *TINY,
           "--train_batch_size", "2", "--train_size", "8", "--output_dir", str(tmp_path), "--max_train_steps", "2",
           "--checkpointing_steps", "2", "--validation_steps", "0", "--report_to", "none", "--augment", "flip",
           "--augment_p", "0.5", "--r1_interval", "2", "--pl_interval", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "2 process(es)" in log and "global batch 4" in log
    assert "replicas identical on all 2 processes" in log
    ckpt = tmp_path / "checkpoint-2"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert Generator.from_pretrained(tmp_path / "generator").img_resolution == 16


# ------------------------------------------------------------------------------------------------
# Pieces


def test_r1_and_path_length_on_linear_maps():
    """Exact values and parameter gradients where the answer is known in closed form."""
    # R1 of D(x) = <a, x>: grad_x = a, penalty = |a|^2 per sample, d(penalty)/da = 2a.
    a = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    penalty = L.r1_penalty(x, (x * a).sum(dim=[1, 2, 3]).unsqueeze(1))
    assert torch.allclose(penalty, a.detach().square().sum().expand(5))
    (grad_a,) = torch.autograd.grad(penalty.mean(), a)
    assert torch.allclose(grad_a, 2 * a.detach())

    # Path length of img = A ws (linear): J^T y = A^T y with y ~ N(0, 1/(H*W)).
    n, num_ws, w_dim, c, h, w = 3, 4, 5, 3, 4, 4
    A = torch.randn(c * h * w, num_ws * w_dim, requires_grad=True)
    ws = torch.randn(n, num_ws, w_dim, requires_grad=True)
    img = (ws.reshape(n, -1) @ A.t()).reshape(n, c, h, w)
    torch.manual_seed(1)
    lengths = L.path_lengths(img, ws)
    torch.manual_seed(1)
    y = torch.randn(n, c, h, w) / math.sqrt(h * w)
    jty = (y.reshape(n, -1) @ A.detach()).reshape(n, num_ws, w_dim)
    assert torch.allclose(lengths, jty.square().sum(dim=2).mean(dim=1).sqrt(), rtol=1e-5)
    pl_mean = torch.tensor(0.3)
    penalty = L.path_length_penalty(lengths, pl_mean)
    assert torch.allclose(penalty, (lengths - 0.3).square())
    (grad_A,) = torch.autograd.grad(penalty.sum(), A)  # second order through autograd.grad(create_graph)
    assert grad_A.abs().sum() > 0


def _param_grads(monkeypatch, impl: str | None, fn, params):
    if impl is None:
        monkeypatch.delenv("HDVILA_OPS_IMPL", raising=False)
    else:
        monkeypatch.setenv("HDVILA_OPS_IMPL", impl)
    grads = torch.autograd.grad(fn(), params, allow_unused=True)  # e.g. the last bias does not move grad_x D
    return [torch.zeros_like(p) if g is None else g.clone() for p, g in zip(params, grads)]


def test_regulariser_gradients_match_reference_ops(monkeypatch):
    """R1 and path-length gradients w.r.t. the networks' weights are second derivatives through
    bias_act/upfirdn2d: the default op path (compiled CPU kernels) gives the same gradients as
    PyTorch's autograd on the reference ops, and they are nonzero. (Finite differences cannot check
    these: lrelu's derivative jumps, so the penalties jump as pre-activations cross zero.)"""
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorConfig(img_resolution=8, channel_base=64, channel_max=8))
    G = Generator(StyleGAN2Config(z_dim=8, w_dim=8, img_resolution=8, mapping_layers=1, channel_base=64,
                                  channel_max=8))
    reals, z = torch.randn(4, 3, 8, 8), torch.randn(4, 8)

    def r1():
        x = reals.clone().requires_grad_(True)
        return L.r1_penalty(x, D(x)).mean()

    def pl():
        torch.manual_seed(7)
        ws = G.mapping(z, None)
        return L.path_length_penalty(L.path_lengths(G.synthesis(ws, noise_mode="const"), ws), torch.tensor(0.1)).mean()

    for fn, params in ((r1, list(D.parameters())), (pl, list(G.parameters()))):
        default = _param_grads(monkeypatch, None, fn, params)
        reference = _param_grads(monkeypatch, "ref", fn, params)
        assert sum(float(g.abs().sum()) for g in default) > 0
        for g_default, g_ref in zip(default, reference):
            assert torch.allclose(g_default, g_ref, rtol=1e-4, atol=1e-6)


def test_losses_and_ema():
    logits = torch.tensor([[0.0], [2.0]])
    assert torch.allclose(L.generator_loss(logits), torch.log1p(torch.exp(-logits)))
    both = L.discriminator_loss(logits, -logits)
    assert torch.allclose(both, 2 * torch.log1p(torch.exp(-logits)))
    assert L.lazy_regularization_ratio(16) == pytest.approx(16 / 17) and L.lazy_regularization_ratio(0) == 1.0
    # Half-life: after ema_kimg * 1000 images the old weights keep half their weight.
    beta = L.ema_beta(32, cur_nimg=10**9, ema_kimg=10, ema_rampup=0.05)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    assert L.ema_beta(32, 0, 10, 0.05) == 0.0  # ramp-up: the first update copies
    assert L.ema_beta(32, 1000, 10, 0.05) == pytest.approx(0.5 ** (32 / 50))  # half-life capped at 5% of 1000
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.25 * a.weight.detach() + 0.75 * b.weight.detach()
    ema = EMA(a)  # the EMA generator's average, with ema_beta's decay
    ema.update(b, decay=0.25)
    assert torch.allclose(ema.module.weight, expected)


def test_augment_pipe_and_adaptive_p():
    assert parse_ops("flip, color") == ("flip", "color") and parse_ops("none") == () and len(parse_ops("all")) == 3
    with pytest.raises(ValueError, match="cutout"):
        parse_ops("flip,cutout")
    x = torch.randn(8, 3, 16, 16)
    pipe = AugmentPipe(parse_ops("all"), p=0.0)
    assert pipe(x) is x
    pipe.p = 1.0
    torch.manual_seed(0)
    y = pipe(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    flip_only = AugmentPipe(("flip",), p=1.0)
    assert torch.equal(flip_only(x), x.flip(3))

    ada = AdaptiveAugment(pipe, target=0.6, interval=2, speed_kimg=0.1)  # 100 images move p from 0 to 1
    pipe.p = 0.0
    ada.accumulate(sign_sum=9, count=10)  # r_t = 0.9 > 0.6: D overfits -> p up
    ada.step(batch_size=10)
    assert pipe.p == 0.0  # adjusts every 2 steps only
    ada.step(batch_size=10)
    assert pipe.p == pytest.approx(0.2)
    state = ada.state_dict()
    ada.accumulate(sign_sum=-10, count=10)
    ada.step(10)
    ada.step(10)
    assert pipe.p == pytest.approx(0.0)  # r_t = -1 < 0.6 -> p down, clamped at 0
    ada.load_state_dict(state)
    assert pipe.p == pytest.approx(0.2) and ada.steps == 2


def test_d_input_blur_fades_and_is_twice_differentiable():
    from generation.stylegan2.augment import blur_sigma, gaussian_blur

    assert blur_sigma(0, 2.0, 100) == 2.0 and blur_sigma(50_000, 2.0, 100) == pytest.approx(1.0)
    assert blur_sigma(100_000, 2.0, 100) == 0.0 and blur_sigma(10, 0.0, 100) == 0.0
    # A blurred impulse is a normalised Gaussian: its mass is kept and its spread is sigma.
    x = torch.zeros(1, 1, 33, 33)
    x[0, 0, 16, 16] = 1.0
    y = gaussian_blur(x, 2.0)[0, 0]
    assert y.shape == (33, 33) and y.sum() == pytest.approx(1.0, abs=1e-3)
    coords = torch.arange(33.0) - 16
    var = (y.sum(0) * coords.square()).sum()
    assert var.sqrt() == pytest.approx(2.0, rel=0.05) and torch.allclose(y, y.t(), atol=1e-7)
    assert gaussian_blur(x, 0.0) is x
    pipe = AugmentPipe((), p=0.0)
    pipe.blur_sigma = 1.0
    assert torch.allclose(pipe(x), gaussian_blur(x, 1.0))
    # R1 differentiates D's input gradient through the blur.
    inp = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: gaussian_blur(t, 0.8), (inp,))


def test_resolve_mixed_precision(monkeypatch):
    import hdvila.training.accelerator as T

    assert T.resolve_mixed_precision("no", cuda=False) == "no"
    assert T.resolve_mixed_precision("fp16", cuda=True) == "fp16"
    with pytest.warns(UserWarning, match="fp16 needs CUDA"):
        assert T.resolve_mixed_precision("fp16", cuda=False) == "no"
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: True)
    assert T.resolve_mixed_precision("bf16", cuda=False) == "bf16"
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="native bf16"):
        assert T.resolve_mixed_precision("bf16", cuda=False) == "no"


def test_bf16_channels_last_training_saves_and_resumes(tmp_path):
    """bf16 autocast with channels-last weights: checkpoints save (safetensors needs dense tensors)
    and resume, the first losses are those of float32 up to bf16 rounding, and the saved weights
    are ordinary row-major tensors."""
    from hdvila.training import cpu_has_native_bf16

    common = [*TINY, "--train_size", "8", "--validation_steps", "0", "--report_to", "none", "--seed", "5"]
    fast = [*common, "--mixed_precision", "bf16", "--channels_last"]
    fp32 = _train(*common, "--output_dir", tmp_path / "fp32", "--max_train_steps", "1", "--checkpointing_steps", "0")
    native = cpu_has_native_bf16()
    with contextlib.nullcontext() if native else pytest.warns(UserWarning, match="native bf16"):
        first = _train(*fast, "--output_dir", tmp_path / "bf16", "--max_train_steps", "2", "--checkpointing_steps", "2")
    a, b = fp32["history"][0], first["history"][0]
    for key in ("loss_G", "loss_D_fake", "loss_D_real"):
        assert math.isfinite(b[key])
        assert b[key] == pytest.approx(a[key], rel=0.05, abs=0.02), key
    if native:  # the autocast really ran: bf16 rounding changes the losses
        assert any(b[k] != a[k] for k in ("loss_G", "loss_D_fake", "loss_D_real"))
    ckpt = tmp_path / "bf16" / "checkpoint-2"
    weights = load_file(str(ckpt / "model.safetensors"))
    assert weights and all(t.is_contiguous() and t.dtype == torch.float32 for t in weights.values())
    resumed = _train(*fast, "--output_dir", tmp_path / "bf16", "--max_train_steps", "3", "--checkpointing_steps", "0",
                     "--resume_from_checkpoint", "latest")
    assert [h["step"] for h in resumed["history"]] == [3] and math.isfinite(resumed["history"][0]["loss_G"])
    G = Generator.from_pretrained(tmp_path / "bf16" / "generator")
    with torch.no_grad():
        assert torch.isfinite(G(torch.randn(2, 32))).all()
