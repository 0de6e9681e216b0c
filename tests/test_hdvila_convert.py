"""Official checkpoint compatibility: key/shape equality with the released model and conversion."""

from __future__ import annotations

import collections
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.convert import convert_hdvila_checkpoint, load_official_state_dict
from hdvila.errors import CheckpointError
from hdvila.modeling_hdvila import HDVILAModel

torch.set_num_threads(1)

OFFICIAL = Path("/work/shared/docs/hdvila_large_state_dict.json")
if not OFFICIAL.is_file():  # the repository copy, when the shared folder is absent
    OFFICIAL = Path(__file__).resolve().parents[1] / "docs" / "hdvila_large_state_dict.json"

# The released structure (stem pool, frozen BN, video width = text width, cnn_low.layer4), shrunk.
SHRUNK = HDVILAConfig.preset("large", resnet_layers=(1, 1, 1, 1), resnet_width=8, vision_width=32,
                             timesformer_heads=4, text_hidden_size=32, text_heads=4, text_intermediate_size=64,
                             text_layers=2, multimodal_layers=2, vocab_size=50, projection_dim=32,
                             max_position_embeddings=64, max_grid_positions=20, hr_size=(64, 128), lr_size=(16, 32))


@pytest.fixture(scope="module")
def official() -> dict:
    if not OFFICIAL.is_file():
        pytest.skip("hdvila_large_state_dict.json not available")
    return json.loads(OFFICIAL.read_text())


def meta_model(config: HDVILAConfig) -> HDVILAModel:
    with torch.device("meta"):
        return HDVILAModel(config)


def synthetic_checkpoint(config: HDVILAConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict as apex O2 would save it: fp16 weights, fp32 BatchNorm, int64 counters, and one
    MLM bias tensor under two names."""
    g = torch.Generator().manual_seed(seed)
    state = collections.OrderedDict()
    for name, t in meta_model(config).state_dict().items():
        if t.dtype == torch.int64:
            state[name] = torch.randint(0, 1000, (), generator=g)
        elif name.startswith(("cnn", "cnn_low")) and ".bn" in name or ".downsample.1." in name:
            value = torch.rand(t.shape, generator=g) + 0.5  # BatchNorm: fp32, positive variances
            state[name] = value
        else:
            state[name] = torch.randn(t.shape, generator=g).half()
    if config.stage == 2:
        state["transformer.cls.predictions.decoder.bias"] = state["transformer.cls.predictions.bias"]
    return state


# ---- the released architecture --------------------------------------------------------------------------
@pytest.mark.parametrize("stage, keys, params", [(2, 1135, 495_178_684), (1, 926, 309_903_488)])
def test_large_matches_official_state_dict(official, stage, keys, params):
    model = meta_model(HDVILAConfig.preset("large", stage=stage))
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    theirs = {k: (shape, dtype) for k, shape, dtype in official[f"stage{stage}"]}
    assert len(theirs) == keys
    assert sorted(set(theirs) - set(ours)) == [] and sorted(set(ours) - set(theirs)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    assert sum(p.numel() for p in model.parameters()) == params  # the shared MLM bias counted once


def test_shrunk_config_uses_official_names(official):
    names = {k for k, _, _ in official["stage2"]}
    ours = set(meta_model(SHRUNK).state_dict())
    assert ours <= names
    assert len(ours) > 300


# ---- round trip -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrap", ["flat", "module_prefix", "wrapped"])
def test_roundtrip_synthetic_official_file(tmp_path, wrap, capsys):
    state = synthetic_checkpoint(SHRUNK)
    saved = {"flat": state, "module_prefix": {f"module.{k}": v for k, v in state.items()},
             "wrapped": {"model": state, "epoch": 3}}[wrap]
    torch.save(saved, tmp_path / "hdvila_stage2.pt")
    report = convert_hdvila_checkpoint(tmp_path / "hdvila_stage2.pt", tmp_path / "out", config=SHRUNK)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert report.cast_to_fp32 == sum(1 for v in state.values() if v.dtype == torch.float16)
    assert "loaded" in capsys.readouterr().out
    model = HDVILAModel.from_pretrained(tmp_path / "out")
    assert model.config == SHRUNK
    converted = model.state_dict()
    assert converted.keys() == state.keys()
    for k, v in state.items():
        expected = v.float() if v.is_floating_point() else v
        assert converted[k].dtype == expected.dtype, k
        assert torch.equal(converted[k], expected), k
    head = model.transformer.cls.predictions
    assert head.decoder.bias is head.bias
    fresh = HDVILAModel(SHRUNK)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == \
        {n: p.requires_grad for n, p in fresh.named_parameters()}
    with torch.no_grad():
        emb = model.get_video_features(torch.randn(1, 1, 3, 64, 128), torch.randn(1, 1, 6, 3, 16, 32))
    assert torch.isfinite(emb).all()


def test_stage2_file_into_stage1_model_and_stage_detection(tmp_path):
    torch.save(synthetic_checkpoint(SHRUNK), tmp_path / "s2.pt")
    report = convert_hdvila_checkpoint(tmp_path / "s2.pt", tmp_path / "r", config=SHRUNK, stage=1, verbose=False)
    assert not report.missing and not report.mismatched
    assert "transformer.cls.predictions.decoder.weight" in report.unexpected
    assert "transformer.bert.encoder.layer.2.output.dense.weight" in report.unexpected
    assert HDVILAModel.read_config(tmp_path / "r").stage == 1
    stage1_keys = meta_model(dataclasses.replace(SHRUNK, stage=1)).state_dict()
    stage1 = {k: v for k, v in synthetic_checkpoint(SHRUNK).items() if k in stage1_keys}
    torch.save(stage1, tmp_path / "s1.pt")
    convert_hdvila_checkpoint(tmp_path / "s1.pt", tmp_path / "auto", config=SHRUNK, verbose=False)
    assert HDVILAModel.read_config(tmp_path / "auto").stage == 1


def test_missing_and_mismatched_keys(tmp_path):
    state = synthetic_checkpoint(SHRUNK)
    del state["timesformer.blocks.0.temporal_fc.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="1 missing.*timesformer.blocks.0.temporal_fc.weight"):
        convert_hdvila_checkpoint(tmp_path / "missing.pt", tmp_path / "m1", config=SHRUNK, verbose=False)
    assert not (tmp_path / "m1").exists()
    report = convert_hdvila_checkpoint(tmp_path / "missing.pt", tmp_path / "m2", config=SHRUNK, strict=False,
                                       verbose=False)
    assert report.missing == ["timesformer.blocks.0.temporal_fc.weight"]
    assert HDVILAModel.from_pretrained(tmp_path / "m2").timesformer.blocks[0].temporal_fc.weight.abs().sum() > 0
    state = synthetic_checkpoint(SHRUNK)
    state["transformer.t_proj.weight"] = torch.zeros(32, 31)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*t_proj.weight: file \(32, 31\) vs model \(32, 32\)"):
        convert_hdvila_checkpoint(tmp_path / "shape.pt", tmp_path / "m3", config=SHRUNK, verbose=False)


class _NotAState:
    """Stands in for a pickled network object (e.g. an NVlabs StyleGAN2 pickle)."""


@pytest.mark.parametrize("kind", ["random_tensors", "stylegan_pt", "pickle_object", "text", "empty", "absent"])
def test_wrong_files_are_refused_and_nothing_is_written(tmp_path, kind):
    src = tmp_path / "file.pt"
    if kind == "random_tensors":
        torch.save({f"w{i}": torch.randn(4, 4) for i in range(10)}, src)
    elif kind == "stylegan_pt":  # rosinality layout: networks under g_ema/d plus a tensor
        torch.save({"g_ema": {"style.1.weight": torch.randn(8, 8)}, "d": {}, "latent_avg": torch.randn(8)}, src)
    elif kind == "pickle_object":
        src.write_bytes(pickle.dumps({"G_ema": _NotAState()}))
    elif kind == "text":
        src.write_text("not a checkpoint\n")
    elif kind == "empty":
        src.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        convert_hdvila_checkpoint(src, tmp_path / "out", config=SHRUNK, verbose=False)
    message = str(err.value)
    assert "file.pt" in message
    assert not (tmp_path / "out").exists()


def test_wrapper_unwrapping(tmp_path):
    state = {"a.weight": torch.ones(2)}
    torch.save({"state_dict": {"model": {"module.a.weight": torch.ones(2)}}}, tmp_path / "x.pt")
    assert load_official_state_dict(tmp_path / "x.pt").keys() == state.keys()


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    from apps.cli import main

    (tmp_path / "bad.pt").write_text("nope")
    assert main(["convert", "hdvila", str(tmp_path / "bad.pt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pt" in err and "Traceback" not in err
