"""``hdvila export``: a tiny StyleGAN2 run's checkpoints (2 steps of generation/train_stylegan2.py)
exported as bundled generator folders, averaged over checkpoints, and refused when not checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apps.cli import main as cli
from generation.stylegan2 import Discriminator, Generator

TINY = ["--resolution", "16", "--channel_base", "256", "--channel_max", "32", "--z_dim", "32", "--w_dim", "32",
        "--mapping_layers", "2", "--train_batch_size", "4", "--num_validation_images", "4", "--num_threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with checkpoint-1 and checkpoint-2 (each with its generator_ema/)."""
    from generation.train_stylegan2 import main as train

    out = tmp_path_factory.mktemp("sg2")
    threads = torch.get_num_threads()
    try:
        train([*TINY, "--train_size", "8", "--output_dir", str(out), "--max_train_steps", "2",
               "--checkpointing_steps", "1", "--validation_steps", "0", "--report_to", "none"])
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    return out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _assert_half_of(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    """``model``'s tensors are ``expected`` stored as float16 and loaded back as float32."""
    state = model.state_dict()
    assert set(expected) <= set(state)
    for k, v in expected.items():
        want = v.half().float() if v.is_floating_point() else v
        assert torch.equal(state[k], want), k


def _fails(capsys, *argv) -> str:
    capsys.readouterr()
    assert cli(["export", *map(str, argv)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in captured.err
    return err


def test_export_writes_ema_generator_and_discriminator(run, tmp_path, capsys):
    ckpt = run / "checkpoint-2"
    out = tmp_path / "bundled"
    capsys.readouterr()
    assert cli(["export", str(ckpt), str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and str(out) in printed[0] and "step 2" in printed[0]

    stored = _weights(out)
    assert stored and all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    G = Generator.from_pretrained(out)
    assert G.config == Generator.read_config(ckpt / "generator_ema")
    _assert_half_of(G, _weights(ckpt / "generator_ema"))
    D = Discriminator.from_pretrained(out / "discriminator")
    _assert_half_of(D, load_file(str(ckpt / "model_1.safetensors")))
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()

    # The run's folder stands for its newest checkpoint; an earlier export is replaced whole.
    (out / "stale.txt").write_text("from before")
    assert cli(["export", str(run), str(out)]) == 0
    assert not (out / "stale.txt").exists()
    _assert_half_of(Generator.from_pretrained(out), _weights(ckpt / "generator_ema"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundled"]  # no temporary folder left


def test_export_generator_from_another_folder(run, tmp_path):
    out = tmp_path / "mixed"
    assert cli(["export", str(run / "checkpoint-2"), str(out), "--generator", str(run / "checkpoint-1" /
                                                                                  "generator_ema")]) == 0
    _assert_half_of(Generator.from_pretrained(out), _weights(run / "checkpoint-1" / "generator_ema"))
    _assert_half_of(Discriminator.from_pretrained(out / "discriminator"),
                    load_file(str(run / "checkpoint-2" / "model_1.safetensors")))


def test_average_of_two_checkpoints_is_their_mean(run, tmp_path, capsys):
    a, b = _weights(run / "checkpoint-1" / "generator_ema"), _weights(run / "checkpoint-2" / "generator_ema")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the EMA moved between the two steps
    out = tmp_path / "avg"
    capsys.readouterr()
    assert cli(["export", str(run / "checkpoint-2"), str(out), "--average", "2"]) == 0
    assert "mean of 2" in capsys.readouterr().out
    mean = {k: ((a[k].double() + b[k].double()) / 2).to(a[k].dtype) if a[k].is_floating_point() else b[k] for k in a}
    G = Generator.from_pretrained(out)
    _assert_half_of(G, mean)
    moved = [k for k in a if not torch.equal(a[k].half(), b[k].half())]
    assert moved and all(not torch.equal(G.state_dict()[k], b[k].half().float()) for k in moved[:5])

    # Only checkpoints up to the one named count: checkpoint-1 has no earlier one.
    err = _fails(capsys, run / "checkpoint-1", tmp_path / "none", "--average", "2")
    assert "--average 1 or less" in err and not (tmp_path / "none").exists()
    err = _fails(capsys, run / "checkpoint-2", tmp_path / "none", "--average", "3")
    assert "2 complete checkpoint(s)" in err and not (tmp_path / "none").exists()
    assert "exclude each other" in _fails(capsys, run / "checkpoint-2", tmp_path / "none", "--average", "2",
                                          "--generator", run / "generator")


def test_missing_or_non_checkpoint_folders_are_refused(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert "no such folder" in _fails(capsys, tmp_path / "missing", out)
    (tmp_path / "empty").mkdir()
    assert "not a checkpoint of train_stylegan2.py" in _fails(capsys, tmp_path / "empty", out)
    assert "not a checkpoint of train_stylegan2.py" in _fails(capsys, run / "generator", out)  # a model folder
    other = tmp_path / "hdvila-checkpoint"  # a training state without StyleGAN2 model settings
    other.mkdir()
    (other / "training_state.json").write_text(json.dumps({"step": 5}))
    assert "no StyleGAN2 model settings" in _fails(capsys, other, out)
    (other / "training_state.json").write_text("{not json")
    assert "not a complete checkpoint" in _fails(capsys, other, out)
    assert not out.exists()

    # A checkpoint without its discriminator or EMA generator, and an output that is not a model folder.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run / "checkpoint-2", broken)
    shutil.rmtree(broken / "generator_ema")
    assert "generator_ema is missing" in _fails(capsys, broken, out)
    (broken / "model_1.safetensors").unlink()
    assert "model_1.safetensors is missing" in _fails(capsys, broken, out)
    assert not out.exists()
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "mine.txt").write_text("keep me")
    assert "not a model folder" in _fails(capsys, run / "checkpoint-2", keep)
    assert (keep / "mine.txt").read_text() == "keep me"
    assert "would replace the checkpoint" in _fails(capsys, run / "checkpoint-2", run)
