"""The shared primitives every loader and writer uses: atomic folders, state-dict comparison and the
safe ``torch.load``."""

import argparse
import os

import pytest
import torch

from hdvila.atomic import atomic_dir
from hdvila.errors import CheckpointError
from hdvila.modeling_utils import UnsafeCheckpointError, compare_state_dict, safe_torch_load, unwrap_state_dict


def test_atomic_dir_replaces_whole_folder_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
    assert sorted(os.listdir(target)) == ["a.bin"]
    with atomic_dir(target) as tmp:
        (tmp / "b.bin").write_bytes(b"2")
    assert sorted(os.listdir(target)) == ["b.bin"]  # the old folder is gone, not merged
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "c.bin").write_bytes(b"partial")
            raise RuntimeError("killed")
    assert sorted(os.listdir(target)) == ["b.bin"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary or old folder left beside it


def test_atomic_dir_merge_keeps_other_entries_and_moves_config_last(tmp_path, monkeypatch):
    target = tmp_path / "model"
    (target / "discriminator").mkdir(parents=True)
    (target / "discriminator" / "config.json").write_text("{}")
    order = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(os.path.basename(b)), real_replace(a, b)))
    with atomic_dir(target, merge=True) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"w")
    assert order == ["model.safetensors", "config.json"]
    assert sorted(os.listdir(target)) == ["config.json", "discriminator", "model.safetensors"]
    assert oct(os.stat(target / "config.json").st_mode & 0o077) != "0o0"  # not left private (0600)


def test_compare_state_dict_reports_each_kind():
    own = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}
    diff = compare_state_dict(own, {"a": torch.zeros(3, 2), "b": torch.zeros(4), "x": torch.zeros(1)})
    assert diff.missing == ["c"] and diff.unexpected == ["x"]
    assert diff.mismatched == ["a: file (3, 2) vs model (2, 3)"] and diff.mismatched_names == {"a"}
    assert not diff.ok and "1 missing key(s): c" in diff.summary()
    assert compare_state_dict(own, {"a": torch.zeros(2, 3), "b": torch.zeros(4)}, optional=lambda k: k == "c").ok


@pytest.mark.parametrize("data", [b"<html><body>404 Not Found</body></html>", b"hello world\n" * 3,
                                  bytes(range(256)) * 2, b"PK\x03\x04truncated zip"])
def test_safe_torch_load_turns_every_failure_into_a_checkpoint_error(tmp_path, data):
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        safe_torch_load(path)


def test_safe_torch_load_refuses_objects_and_runs_nothing(tmp_path):
    path = tmp_path / "ns.pt"
    torch.save({"opts": argparse.Namespace(lr=1.0), "w": torch.ones(1)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_torch_load(path)
    assert info.value.global_name == "argparse.Namespace"
    assert safe_torch_load(path, allowed_globals=(argparse.Namespace,))["opts"].lr == 1.0
    with pytest.raises(CheckpointError, match="empty"):
        (tmp_path / "e.pt").write_bytes(b"")
        safe_torch_load(tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="not found"):
        safe_torch_load(tmp_path / "missing.pt")


def test_unwrap_state_dict():
    t = torch.ones(1)
    assert unwrap_state_dict({"state_dict": {"module.a": t, "module.b": t}}).keys() == {"a", "b"}
    assert unwrap_state_dict({"model": {"model": {"x": t, "epoch": 3}}}).keys() == {"x"}
    assert unwrap_state_dict({"epoch": 3}) is None and unwrap_state_dict([t]) is None


def test_labelled_grid_draws_each_label_under_its_tile():
    import numpy as np

    from hdvila.tensors import labelled_grid

    images = torch.full((3, 3, 8, 8), -1.0)                       # black tiles
    grid = labelled_grid(images, ["a", "", "a long prompt that wraps over lines"], nrow=2, scale=4)
    arr = np.asarray(grid)
    w, h = arr.shape[1], arr.shape[0]
    assert w == 2 * (32 + 2) + 2 and h > 2 * (32 + 2)              # two columns of 32 px tiles, two rows
    strip = arr[2 + 32: 2 + 32 + 10]                                 # under the first row
    assert (strip[:, 2:34] < 128).any(), "the first label is drawn"
    assert (strip[:, 36:68] > 250).all(), "the empty label leaves its strip white"
    assert (arr[2:34, 2:34] == 0).all()                              # the tile itself, unchanged
    with pytest.raises(ValueError, match="labels"):
        labelled_grid(images, ["x"], nrow=2)
