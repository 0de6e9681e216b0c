"""The bundled judge reads demo-domain attributes; its CLI reports bad files and goes on."""

import json

import torch

from hdvila.demo import DemoImageDataset
from hdvila.imageio import save_image
from hdvila.judge import ATTRIBUTE_NAMES, load_judge
from hdvila.judge.augment import degrade
from hdvila.judge.evaluate import judge_accuracy, sample_report
from hdvila.judge.train import train_judge


def test_bundled_judge_reads_unseen_combinations():
    acc = judge_accuracy(load_judge(), n=300, split="test", seed=7)
    assert all(v >= 0.98 for v in acc.values()), acc


def test_bundled_judge_reads_degraded_images():
    judge = load_judge()
    data = DemoImageDataset("val", 200, seed=5)
    images = torch.stack([data[i]["image"] for i in range(200)])
    labels = torch.stack([data[i]["labels"] for i in range(200)])
    pred = judge.predict(degrade(images, torch.Generator().manual_seed(0)))
    for j, k in enumerate(ATTRIBUTE_NAMES):
        assert (pred[k][0] == labels[:, j]).float().mean() >= 0.95, k


def test_sample_report_compares_judged_distributions():
    judge = load_judge()
    data = DemoImageDataset("train", 120, seed=3)
    real = torch.stack([data[i]["image"] for i in range(120)])
    same = sample_report(judge, real, real)
    assert same["confident_all_attributes"] == same["real_confident_all_attributes"] > 0.8
    assert same["confident_per_attribute"] == same["real_confident_per_attribute"]
    assert all(v >= same["real_confident_all_attributes"] for v in same["real_confident_per_attribute"].values())
    assert all(v == 0.0 for v in same["tv_distance"].values())
    # Flat grey images: one background class, no confident reading of the object, a far distribution.
    grey = torch.zeros_like(real)
    far = sample_report(judge, grey, real)
    assert far["confident_all_attributes"] < 0.05
    assert far["real_confident_per_attribute"] == same["real_confident_per_attribute"]
    assert far["confident_per_attribute"]["shape"] < 0.5 < far["real_confident_per_attribute"]["shape"]
    assert far["tv_distance"]["background"] > 0.5
    shares = far["class_shares"]["background"]
    assert max(g for g, _ in shares.values()) == 1.0  # every grey image lands in one class
    assert abs(sum(r for _, r in shares.values()) - 1.0) < 1e-6


def test_judge_cli_reports_bad_file_and_continues(cli, tmp_path):
    data = DemoImageDataset("test", 2, seed=3)
    for i in range(2):
        save_image(data[i]["image"], tmp_path / f"ok{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    r = cli("judge", tmp_path, "--json")
    assert r.returncode == 1
    assert r.stderr.strip() == (f"error: {tmp_path / 'broken.png'}: image file is truncated or its data is corrupt; "
                                "re-export or re-download it.")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(tmp_path / "ok0.png"), str(tmp_path / "ok1.png")]
    for i, row in enumerate(rows):
        spec = data.spec(i)
        assert row["shape"]["value"] == spec.shape and row["color"]["value"] == spec.color
        assert 0 <= row["pattern"]["confidence"] <= 1


def test_judge_cli_refuses_slivers_and_specks(cli, tmp_path):
    """A 1x1 image or a 10000x10 sliver is not read (it would come back with confident labels)."""
    from PIL import Image

    save_image(DemoImageDataset("val", 1)[0]["image"], tmp_path / "ok.png")
    Image.new("RGB", (1, 1), "red").save(tmp_path / "speck.png")
    Image.new("RGB", (10000, 10), "red").save(tmp_path / "sliver.png")
    r = cli("judge", tmp_path, "--json")
    assert r.returncode == 1 and [json.loads(x)["file"] for x in r.stdout.splitlines()] == [str(tmp_path / "ok.png")]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and all("the judge reads square demo-domain frames" in e for e in errors)
    assert any("1x1 px" in e for e in errors) and any("10000x10 px" in e for e in errors)


def test_judge_cli_table(cli, tmp_path):
    save_image(DemoImageDataset("val", 1)[0]["image"], tmp_path / "a.png")
    r = cli("judge", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.split("\t") == ["file", *ATTRIBUTE_NAMES]
    assert len(row.split("\t")) == 6


def test_judge_training_resumes(tmp_path, capsys):
    train_judge(tmp_path / "j", steps=2, batch_size=4, checkpoint_every=1)
    state = torch.load(tmp_path / "j" / "train_state.pt", weights_only=True)
    assert state["step"] == 2
    train_judge(tmp_path / "j", steps=3, batch_size=4, checkpoint_every=1)
    assert "resuming from step 2" in capsys.readouterr().out
    assert torch.load(tmp_path / "j" / "train_state.pt", weights_only=True)["step"] == 3
    assert (tmp_path / "j" / "model.safetensors").exists()
