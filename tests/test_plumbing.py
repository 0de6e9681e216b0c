"""Model files, device policy and the command line."""

import dataclasses
import json
import warnings

import pytest
import torch

from hdvila.device import get_device, get_dtype
from hdvila.errors import CheckpointError, UserError
from hdvila.modeling_utils import PretrainedModel


@dataclasses.dataclass
class ToyConfig:
    model_type: str = "toy"
    width: int = 4


class Toy(PretrainedModel):
    config_class = ToyConfig
    external_weight_prefixes = ("frozen.",)

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.lin = torch.nn.Linear(config.width, 3)
        self.frozen = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(config.width, 3)
        self.head.weight = self.lin.weight  # tied


@dataclasses.dataclass
class OtherConfig:
    model_type: str = "other"


class Other(PretrainedModel):
    config_class = OtherConfig

    def __init__(self, config):
        super().__init__()
        self.config = config


def test_round_trip_strict(tmp_path):
    m = Toy(ToyConfig(width=5))
    m.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == {"model_type": "toy", "width": 5}
    m2 = Toy.from_pretrained(tmp_path / "m")
    assert torch.equal(m2.lin.weight, m.lin.weight) and torch.equal(m2.lin.bias, m.lin.bias)
    assert m2.head.weight is m2.lin.weight
    assert not m2.training
    from safetensors import safe_open
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("frozen.") for k in keys)  # external weights are not duplicated
    assert len({"lin.weight", "head.weight"} & keys) == 1   # a tied tensor is stored once


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError) as e:
        Toy.from_pretrained(tmp_path / "none")
    assert str(e.value) == (f"Model folder not found: {tmp_path / 'none'}. Pass the folder that holds config.json "
                            "and model.safetensors.")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "weights.pt"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file, not a model folder.*hdvila convert"):
        Toy.from_pretrained(f)


def test_missing_config_and_weights(tmp_path):
    Toy(ToyConfig()).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        Toy.from_pretrained(tmp_path / "m")
    assert str(e.value) == (f"{tmp_path / 'm' / 'model.safetensors'} is missing: "
                            "the model folder has a config but no weights.")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(CheckpointError) as e:
        Toy.from_pretrained(tmp_path / "m")
    assert str(e.value) == f"{tmp_path / 'm' / 'config.json'} is missing: {tmp_path / 'm'} is not a saved model folder."


def test_wrong_model_type(tmp_path):
    Other(OtherConfig()).save_pretrained(tmp_path / "o")
    with pytest.raises(CheckpointError) as e:
        Toy.from_pretrained(tmp_path / "o")
    assert str(e.value) == (f"{tmp_path / 'o'} holds a model of type 'other', but Toy needs 'toy'. "
                            "Pass a folder saved by Toy.")


def test_shape_mismatch(tmp_path):
    Toy(ToyConfig(width=4)).save_pretrained(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    cfg.write_text(json.dumps({"model_type": "toy", "width": 6}))
    with pytest.raises(CheckpointError) as e:
        Toy.from_pretrained(tmp_path / "m")
    msg = str(e.value)
    assert "does not match Toy as configured" in msg and "lin.weight: file (3, 4) vs model (3, 6)" in msg


def test_unknown_config_key_and_bad_json(tmp_path):
    Toy(ToyConfig()).save_pretrained(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    cfg.write_text(json.dumps({"model_type": "toy", "depth": 3}))
    with pytest.raises(CheckpointError, match=r"has settings \['depth'\] that Toy does not know"):
        Toy.from_pretrained(tmp_path / "m")
    cfg.write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        Toy.from_pretrained(tmp_path / "m")


def test_truncated_weights(tmp_path):
    Toy(ToyConfig()).save_pretrained(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        Toy.from_pretrained(tmp_path / "m")


def test_device_policy():
    assert get_device("cpu").type == "cpu"
    assert get_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert get_dtype("auto", torch.device("cpu")) == torch.float32
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert get_dtype("fp16", torch.device("cpu")) == torch.float32
    assert any("float32 instead" in str(x.message) for x in w)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available here; use --device cpu"):
            get_device("cuda")


def test_cli_help_lists_commands(cli):
    r = cli("--help")
    assert r.returncode == 0
    for name in ("demo-data", "judge", "convert", "eval-retrieval", "search", "invert"):
        assert name in r.stdout


def test_cli_user_error_is_one_line(cli, tmp_path):
    r = cli("judge", tmp_path / "missing")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'missing'}: no such file or folder."
    assert "Traceback" not in r.stderr
