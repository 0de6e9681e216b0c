"""HD-VILA training script: checkpoints and exact resume, stage 2 freezing, fine-tuning init,
annotation-file data, hard-negative batches, and a 2-process CPU run that gathers features."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.modeling_hdvila import HDVILAModel

REPO = Path(__file__).resolve().parent.parent

# Mini-structured but tiny: HR 64 / LR 16, 2x2 video grid, random 2-layer text tower (bert vocabulary).
TINY = dict(text_init="random", freeze_text_encoder=False, resnet_layers=(1, 1, 1, 1), resnet_width=8,
            vision_width=32, timesformer_depth=1, timesformer_heads=4, text_hidden_size=32, text_heads=4,
            text_intermediate_size=64, text_layers=2, multimodal_layers=1, projection_dim=16,
            max_position_embeddings=64, hr_size=(64, 64), lr_size=(16, 16), resnet_stem_pool=True)


def _args(out: Path, *extra: str, steps: int = 4) -> list[str]:
    return ["--preset", "mini", "--config_overrides", json.dumps(TINY), "--output_dir", str(out),
            "--max_train_steps", str(steps), "--train_batch_size", "4", "--image_ratio", "0.5",
            "--learning_rate", "1e-3", "--lr_scheduler", "constant", "--lr_warmup_steps", "2",
            "--val_videos", "6", "--val_images", "6", "--val_n_clips", "2", "--no_progress", "--report_to", "none",
            "--threads", "1", *extra]


def _train(argv: list[str]) -> dict:
    from conftest import run_training_main
    from hdvila.train import main

    return run_training_main(main, argv)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    """4 steps, checkpoints every 2 (limit 1), then resumed to 6; returns the run folder."""
    out = tmp_path_factory.mktemp("stage1")
    s = _train(_args(out, "--checkpointing_steps", "2", "--checkpoints_total_limit", "1", "--report_to", "tensorboard",
                     "--validation_steps", "2"))
    assert s["global_step"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # checkpoint-2 pruned
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no tensorboard event file"
    first = _weights(out / "model")
    s = _train(_args(out, "--checkpointing_steps", "2", "--checkpoints_total_limit", "1",
                     "--resume_from_checkpoint", "latest", steps=6))
    assert s["global_step"] == 6
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-6"]
    assert any(not torch.equal(first[k], v) for k, v in _weights(out / "model").items()), "resumed run did not train"
    return out


def test_resume_matches_a_straight_run(stage1, tmp_path):
    straight = tmp_path / "straight"
    s = _train(_args(straight, "--checkpointing_steps", "3", steps=6))
    assert s["global_step"] == 6 and s["validation"]["t2v_R@1"] >= 0
    a, b = _weights(stage1 / "model"), _weights(straight / "model")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    # Optimizer state after 6 steps: Adam's step counters agree.
    opt_a = torch.load(stage1 / "checkpoint-6" / "optimizer.bin", weights_only=False)
    opt_b = torch.load(straight / "checkpoint-6" / "optimizer.bin", weights_only=False)
    steps_a = {int(v["step"]) for v in opt_a["state"].values()}
    assert steps_a == {6} and steps_a == {int(v["step"]) for v in opt_b["state"].values()}


def test_saved_model_loads_and_embeds(stage1):
    model = HDVILAModel.from_pretrained(stage1 / "model")
    assert model.config.stage == 1 and model.config.hr_size == (64, 64)
    feats = model.get_image_features(torch.zeros(2, 3, 64, 64), unit_range=True)
    assert feats.shape == (2, 16) and torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    summary = json.loads((stage1 / "train_summary.json").read_text())
    assert summary["global_step"] == 6 and "t2i_R@1" in summary["validation"]


def test_stage2_trains_mlm_with_stage1_frozen_then_finetune(stage1, tmp_path):
    s2 = tmp_path / "stage2"
    s = _train(_args(s2, "--stage", "2", "--init_from", str(stage1 / "model"), "--checkpointing_steps", "10",
                     steps=2))
    assert s["global_step"] == 2 and torch.isfinite(torch.tensor(s["last"]["loss"]))
    before, after = _weights(stage1 / "model"), _weights(s2 / "model")
    assert HDVILAModel.read_config(s2 / "model").stage == 2
    stage1_prefixes = ("cnn.", "cnn_low.", "grid_encoder", "timesformer.", "transformer.t_proj", "transformer.v_proj",
                       "transformer.bert.pooler1", "transformer.bert.embeddings", "transformer.bert.encoder.layer.0.",
                       "transformer.bert.encoder.layer.1.")
    shared = [k for k in before if k.startswith(stage1_prefixes)]
    assert len(shared) > 50 and all(k in after for k in shared)
    for k in shared:  # weights and BatchNorm statistics alike
        assert torch.equal(before[k], after[k]), f"stage 2 changed the stage-1 tensor {k}"
    new = [k for k in after if k.startswith("transformer.bert.encoder.layer.2.")]
    assert new and all(k not in before for k in new)
    # The multimodal layer trained: it differs from a fresh seed-0 initialisation of the same model.
    torch.manual_seed(0)
    fresh = HDVILAModel(HDVILAConfig.preset("mini", **{**TINY, "stage": 2})).state_dict()
    assert any(not torch.equal(after[k], fresh[k]) for k in new)

    # Retrieval fine-tuning from the stage-2 folder (non-strict: the multimodal parts are dropped).
    ft = tmp_path / "finetune"
    s = _train(_args(ft, "--stage", "finetune", "--init_from", str(s2 / "model"), "--checkpointing_steps", "10",
                     "--no_final_validation", steps=1))
    assert s["global_step"] == 1 and torch.isfinite(torch.tensor(s["last"]["loss"]))
    tuned = _weights(ft / "model")
    assert HDVILAModel.read_config(ft / "model").stage == 1
    assert not any(k.startswith("transformer.bert.encoder.layer.2.") for k in tuned)
    # Non-strict init: frozen parts the forward never uses come unchanged from the stage-2 folder, and
    # the trained parts started there (one small step away).
    assert torch.equal(tuned["timesformer.norm.weight"], after["timesformer.norm.weight"])
    delta = (tuned["timesformer.pos_embed"] - after["timesformer.pos_embed"]).abs().max()
    assert 0 < delta < 0.01


def test_annotation_files_train_through_decord(tmp_path):
    from hdvila.demo.export import export_demo_data

    data = tmp_path / "data"
    export_demo_data(data, split="train", videos=4, images=4, video_resolution=64, image_resolution=32, frames=32)
    out = tmp_path / "run"
    s = _train(_args(out, "--annotations", str(data / "hdvila_train.jsonl"), "--videos", str(data / "videos"),
                     "--format", "jsonl", "--image_annotations", str(data / "images_train.jsonl"),
                     "--val_annotations", str(data / "msrvtt_train.csv"), "--val_format", "msrvtt",
                     "--checkpointing_steps", "10", steps=2))
    assert s["global_step"] == 2
    assert set(s["validation"]) >= {"t2v_R@1", "t2v_R@5", "v2t_R@1"}
    assert torch.isfinite(torch.tensor(s["last"]["image_loss"]))


def test_annotation_batches_cover_each_video_once_per_epoch(tmp_path):
    from hdvila.data import AnnotationStepBatches
    from hdvila.processing_hdvila import HDVILAProcessor
    from hdvila.retrieval.annotations import Annotations

    videos = tmp_path / "v"
    videos.mkdir()
    ids = [f"vid{i}" for i in range(6)]
    for vid in ids:
        (videos / f"{vid}.mp4").write_bytes(b"x")  # found by name; never decoded here
    ann = Annotations(ids, [[f"caption {i}"] for i in range(6)])
    proc = HDVILAProcessor.from_config(HDVILAConfig.preset("mini", **TINY))
    seen = []
    for rank in range(2):
        data = AnnotationStepBatches(proc, ann, videos, 3, rank=rank, world_size=2, seed=1)
        seen += [data._order(0, 6, p) for p in data.positions(0, 3)]
    assert sorted(seen) == list(range(6))  # epoch 0 split across the two processes, no repeats


def test_demo_batches_are_step_indexed_and_grouped():
    from hdvila.data import DemoStepBatches
    from hdvila.processing_hdvila import HDVILAProcessor

    proc = HDVILAProcessor.from_config(HDVILAConfig.preset("mini", **TINY), train_n_clips=1)
    a = DemoStepBatches(proc, 4, 2, seed=3, group_size=4)
    b = DemoStepBatches(proc, 4, 2, seed=3, group_size=4)
    x, y = a[5], b[5]
    assert x["hr_frames"].shape == (4, 1, 3, 64, 64) and x["lr_frames"].shape == (4, 1, 6, 3, 16, 16)
    assert x["images"].shape == (2, 3, 64, 64) and x["input_ids"].shape[0] == 6
    for k in x:
        assert torch.equal(x[k], y[k]), k
    assert not torch.equal(a[6]["hr_frames"], x["hr_frames"])
    specs = [a.videos.spec(i) for i in a.video_indices(5)]
    assert len({(s.shape, s.color, s.pattern, s.background) for s in specs}) == 1  # one hard-negative group
    other = DemoStepBatches(proc, 4, 0, seed=3, rank=1, world_size=2, group_size=4)
    assert not set(other.video_indices(5)) & set(DemoStepBatches(proc, 4, 0, seed=3, rank=0, world_size=2,
                                                                  group_size=4).video_indices(5))


def test_two_cpu_processes_gather_features(tmp_path):
    out = tmp_path / "ddp"
    # accelerate 1.15's "--cpu --num_processes 2" starts ONE process unless an MPI hostfile is given;
    # "--multi_gpu" launches through torchrun, and the script (cpu=True without CUDA) then runs MULTI_CPU/gloo.
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(REPO / "hdvila" / "train.py"),
           *_args(out, "--checkpointing_steps", "1", "--val_videos", "0", "--val_images", "0", steps=1)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = re.findall(r"process (\d)/2: video logits (\d+)x(\d+)", proc.stdout)
    # Each process has 4 videos; the logits cover both processes' pairs.
    assert sorted(lines) == [("0", "8", "8"), ("1", "8", "8")], proc.stdout[-2000:]
    assert (out / "checkpoint-1").is_dir() and (out / "model" / "model.safetensors").is_file()


def test_lean_fp16_export_loads_and_embeds_alike(stage1, tmp_path):
    from hdvila.modeling_utils import export_lean

    lean = export_lean(stage1 / "model", tmp_path / "lean")
    stored = _weights(lean)
    assert stored["cnn.conv1.weight"].dtype == torch.float16
    assert stored["cnn.bn1.running_var"].dtype == torch.float32  # BatchNorm statistics stay fp32
    assert (lean / "model.safetensors").stat().st_size < 0.6 * (stage1 / "model" / "model.safetensors").stat().st_size
    a, b = HDVILAModel.from_pretrained(stage1 / "model"), HDVILAModel.from_pretrained(lean)
    assert next(b.parameters()).dtype == torch.float32
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    cos = (a.get_image_features(images, unit_range=True) * b.get_image_features(images, unit_range=True)).sum(-1)
    assert cos.min() > 0.999


def test_caption_negatives_differ_in_one_attribute_and_train(tmp_path):
    """--caption_negatives K: each image brings K captions that are its own with one attribute changed
    (shape among them), extra image-to-text negatives; a tiny run trains with them."""
    from hdvila.data import NEGATIVE_ATTRIBUTES, DemoStepBatches
    from hdvila.demo.attributes import ATTRIBUTES
    from hdvila.losses import contrastive_loss, contrastive_loss_with_negatives
    from hdvila.processing_hdvila import HDVILAProcessor

    proc = HDVILAProcessor.from_config(HDVILAConfig.preset("mini", **TINY), train_n_clips=1)
    data = DemoStepBatches(proc, 2, 3, seed=1, group_size=1, caption_negatives=6)
    batch = data[0]
    assert batch["negative_input_ids"].shape[0] == 3 * 6
    assert NEGATIVE_ATTRIBUTES.count("shape") == 2
    for index in data.image_indices(0):
        spec, own = data.images.spec(index), data.images.caption(index)
        negatives = data.negative_captions(index, 0)
        assert data.negative_captions(index, 0) == negatives  # a function of the step
        for attribute, caption in zip(NEGATIVE_ATTRIBUTES, negatives):
            # the true caption with only this attribute changed, worded with the same draws
            others = [data.images.caption(index, **{attribute: v}) for v in ATTRIBUTES[attribute]
                      if v != getattr(spec, attribute)]
            assert caption in others and caption != own
    assert data.images.caption(0, shape=data.images.spec(0).shape) == data.images.caption(0)

    # The loss: with no negatives it is the plain InfoNCE; a negative equal to a true text raises it.
    torch.manual_seed(0)
    t, v = (torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(2))
    torch.testing.assert_close(contrastive_loss_with_negatives(t, v, t[:0], 0.1),
                               contrastive_loss(t, v, 0.1, gather=False))
    assert contrastive_loss_with_negatives(t, v, v, 0.1) > contrastive_loss(t, v, 0.1, gather=False)

    s = _train(_args(tmp_path / "neg", "--caption_negatives", "2", "--group_size", "1", "--value_weight", "0.5",
                     steps=2))
    assert s["global_step"] == 2 and np.isfinite(s["last"]["image_loss"]) and np.isfinite(s["last"]["value_loss"])


def test_value_prompt_loss_reads_each_attribute_of_a_still():
    """--value_weight: the batch carries every attribute's short prompts and each image's value
    indices; the loss is the mean over attributes of the cross-entropy over that attribute's prompts."""
    from hdvila.data import VALUE_ATTRIBUTES, DemoStepBatches, value_prompt_sizes, value_prompt_texts
    from hdvila.demo.attributes import ATTRIBUTES
    from hdvila.objectives import ContrastiveObjective
    from hdvila.processing_hdvila import HDVILAProcessor

    texts, sizes = value_prompt_texts(), value_prompt_sizes()
    assert len(texts) == sum(sizes) and texts[:2] == ["a circle", "a square"] and "a striped one" in texts
    cfg = HDVILAConfig.preset("mini", **TINY)
    proc = HDVILAProcessor.from_config(cfg, train_n_clips=1)
    data = DemoStepBatches(proc, 2, 3, seed=1, group_size=1, value_prompts=True)
    batch = data[0]
    for row, index in zip(batch["image_labels"], data.image_indices(0)):
        spec = data.images.spec(index)
        assert ([ATTRIBUTES[a][int(v)] for a, v in zip(VALUE_ATTRIBUTES, row)]
                == [getattr(spec, a) for a in VALUE_ATTRIBUTES])
    from hdvila.modeling_hdvila import HDVILAModel

    torch.manual_seed(0)
    model = HDVILAModel(cfg).eval()  # no dropout: two forwards agree
    objective = ContrastiveObjective(model, 0.05, value_weight=2.0, value_sizes=sizes)
    inputs = {k: v for k, v in batch.items() if k not in ("needs_motion", "needs_pattern")}
    out = objective(**inputs)
    without = objective(**{k: v for k, v in inputs.items() if not k.startswith("value_")})
    torch.testing.assert_close(out["loss"], without["loss"] + 2.0 * out["value_loss"])
    assert out["value_loss"] > 0
    out["value_loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_attribute_loss_trains_a_head_that_is_not_saved_with_the_model(tmp_path):
    """--attribute_weight: a training-only classifier per attribute on the stills' pooled visual
    features; the loss is added with its weight, reaches the visual tower, resumes with the run's
    state, and the saved model has no trace of it."""
    from hdvila.data import DemoStepBatches, value_prompt_sizes
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.objectives import ContrastiveObjective
    from hdvila.processing_hdvila import HDVILAProcessor

    cfg = HDVILAConfig.preset("mini", **TINY)
    proc = HDVILAProcessor.from_config(cfg, train_n_clips=1)
    data = DemoStepBatches(proc, 2, 3, seed=1, group_size=1, image_labels=True)
    batch = data[0]
    assert batch["image_labels"].shape == (3, 5) and "value_input_ids" not in batch
    torch.manual_seed(0)
    model = HDVILAModel(cfg).eval()
    objective = ContrastiveObjective(model, 0.05, value_sizes=value_prompt_sizes(), attribute_weight=0.5)
    assert objective.attribute_head.out_features == sum(value_prompt_sizes())
    inputs = {k: v for k, v in batch.items() if k not in ("needs_motion", "needs_pattern")}
    out = objective(**inputs)
    plain = ContrastiveObjective(model, 0.05)(**{k: v for k, v in inputs.items() if k != "image_labels"})
    torch.testing.assert_close(out["loss"], plain["loss"] + 0.5 * out["attribute_loss"])
    # a fresh head guesses: the loss is near the sum over attributes of log(number of values), 7.05
    assert 4.0 < float(out["attribute_loss"].detach()) < 11.0
    out["attribute_loss"].backward()
    assert model.cnn.conv1.weight.grad is not None and model.cnn.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="value_sizes"):
        ContrastiveObjective(model, 0.05, attribute_weight=1.0)

    s = _train(_args(tmp_path / "attr", "--attribute_weight", "1.0", "--group_size", "1", steps=2))
    assert s["global_step"] == 2 and np.isfinite(s["last"]["attribute_loss"])
    # a stills-only phase: no videos, images and their losses only
    only = _train(_args(tmp_path / "stills", "--attribute_weight", "1.0", "--train_batch_size", "0",
                        "--train_image_batch_size", "3", "--val_videos", "0", steps=2))
    assert only["global_step"] == 2 and "video_loss" not in only["last"] and np.isfinite(only["last"]["image_loss"])
    with pytest.raises(SystemExit):
        _train(_args(tmp_path / "bad", "--train_batch_size", "0", steps=2))  # no images either
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "attr" / "model" / "model.safetensors"))
    assert not any("attribute_head" in k for k in saved)
