"""generation/train_sr.py: diffusers-style checkpoints (4 steps, every 2, resume), an exact resume,
a SIGKILL mid-training that leaves no half checkpoint, and a 2-process CPU run (gloo).

Tiny components: a 32 px generator with its discriminator, the bundled HD-VILA mini for captions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from generation.stylegan2.config import DiscriminatorConfig, StyleGAN2Config
from generation.stylegan2.networks import Discriminator, Generator

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gan") / "G"
    torch.manual_seed(0)
    Generator(StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=32, mapping_layers=1, channel_base=256,
                              channel_max=32)).save_pretrained(folder)
    Discriminator(DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=32)).save_pretrained(
        folder / "discriminator")
    return folder


def _args(out: Path, gan: Path, *extra: str, steps: int = 4) -> list[str]:
    return ["--output_dir", str(out), "--generator", str(gan), "--train_size", "12", "--val_size", "4",
            "--train_batch_size", "2", "--encoder_channels", "8", "--decoder_channels", "8",
            "--max_train_steps", str(steps), "--report_to", "none", "--r1_every", "2", "--text_every", "2", *extra]


def _train(argv: list[str]) -> dict:
    from conftest import run_training_main
    from generation.train_sr import main

    return run_training_main(main, argv)


def _state(folder: Path) -> dict:
    return json.loads((folder / "training_state.json").read_text())


def test_checkpoints_every_2_steps_resume_and_match_a_straight_run(tiny_gan, tmp_path):
    out = tmp_path / "run"
    r = _train(_args(out, tiny_gan, "--checkpointing_steps", "2", "--validation_steps", "2"))
    assert r["step"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for step in (2, 4):
        ckpt = out / f"checkpoint-{step}"
        assert _state(ckpt)["step"] == step
        assert (ckpt / "ema" / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
        assert (ckpt / "model_1.safetensors").is_file(), "the discriminator is not in the checkpoint"
    assert (out / "validation" / "step-000004.png").is_file()
    assert r["val/psnr_text"] > 10 and r["val/psnr_bicubic"] > 10
    # the pipeline folder at the end reloads and upscales at the model's size
    from generation.superres.pipeline_sr import SRPipeline

    pipe = SRPipeline.from_pretrained(out / "pipeline")
    img = pipe(torch.zeros(1, 3, 8, 8), output_type="pt").images
    assert tuple(img.shape) == (1, 3, 32, 32)

    # resume to 6 with a limit of 2: checkpoint-2 is pruned, the run goes on from step 4
    r = _train(_args(out, tiny_gan, "--checkpointing_steps", "2", "--checkpoints_total_limit", "2",
                     "--resume_from_checkpoint", "latest", steps=6))
    assert r["step"] == 6
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert json.loads((out / "training_args.json").read_text())["max_train_steps"] == 6

    # 6 straight steps give the same EMA weights as 4 + resume + 2
    straight = tmp_path / "straight"
    _train(_args(straight, tiny_gan, "--checkpointing_steps", "6", steps=6))
    a = load_file(str(out / "checkpoint-6" / "ema" / "model.safetensors"))
    b = load_file(str(straight / "checkpoint-6" / "ema" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "a resumed run diverged from an uninterrupted one"


def test_sigkill_leaves_only_complete_checkpoints_and_resumes(tiny_gan, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, str(REPO / "generation" / "train_sr.py"),
           *_args(out, tiny_gan, "--checkpointing_steps", "1", "--validation_steps", "0", steps=1000)]
    log = tmp_path / "killed.stderr"
    with open(log, "wb") as err:  # a file, not a pipe nobody reads: a full pipe would stall the run
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 600  # a guard against a hang only
        while time.monotonic() < deadline and not (out / "checkpoint-2").is_dir():
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        assert (out / "checkpoint-2").is_dir(), "no second checkpoint within 600 s: " + log.read_text()[-3000:]
        time.sleep(0.3)  # land the kill anywhere in the next step or save
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for folder in out.glob("checkpoint-*"):
        state = _state(folder)  # every folder under a checkpoint's name is complete
        assert folder.name == f"checkpoint-{state['step']}"
        assert (folder / "ema" / "model.safetensors").is_file() and (folder / "optimizer.bin").is_file()
    last = max(_state(f)["step"] for f in out.glob("checkpoint-*"))
    r = _train(_args(out, tiny_gan, "--checkpointing_steps", "1", "--validation_steps", "0",
                     "--resume_from_checkpoint", "latest", steps=last + 1))
    assert r["step"] == last + 1 and _state(out / f"checkpoint-{last + 1}")["step"] == last + 1


def test_two_cpu_processes(tiny_gan, tmp_path):
    out = tmp_path / "ddp"
    # "--multi_gpu" launches through torchrun; without CUDA the script runs MULTI_CPU with gloo
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(REPO / "generation" / "train_sr.py"),
           *_args(out, tiny_gan, "--checkpointing_steps", "2", "--validation_steps", "0", steps=2)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = out / "checkpoint-2"
    assert _state(ckpt) == {**_state(ckpt), "step": 2, "images_seen": 2 * 2 * 2}
    assert sorted(p.name for p in ckpt.glob("random_states_*.pkl")) == ["random_states_0.pkl", "random_states_1.pkl"]
    assert (out / "pipeline").is_dir()
