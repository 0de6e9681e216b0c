"""StyleGAN2 conversion: NVlabs network pickles (read without running them), rosinality checkpoints,
model folders, and every refusal with its message.

NVlabs-format pickles are written by ``tests/nvlabs_pickle.py`` (our own writer of the persistence
format); rosinality-format checkpoints and an independent forward pass in rosinality's conventions
come from ``tests/rosinality_ref.py``.
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import nvlabs_pickle as nv
import rosinality_ref as ros
from apps.cli import main as cli_main
from generation.stylegan2.legacy import read_network_pickle
from hdvila.errors import CheckpointError

TINY_G = dict(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32, mapping_layers=2)
TINY_D = dict(img_resolution=32, channel_base=256, channel_max=32)
ROS_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}  # = min(256 // res, 32), as TINY_G


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers.


def networks():
    from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config

    return Generator, StyleGAN2Config, Discriminator, DiscriminatorConfig


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter and buffer non-trivial values (noise gains start at 0, biases at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            scale = 0.1 if name.endswith(("bias", "noise_strength", "w_avg")) else 1.0
            t.copy_(torch.randn(t.shape, generator=g) * scale + (1.0 if name.endswith("affine.bias") else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_nets():
    Generator, StyleGAN2Config, Discriminator, DiscriminatorConfig = networks()
    g_cfg = StyleGAN2Config(**TINY_G)
    d_cfg = DiscriminatorConfig(**TINY_D)
    G, G_ema = randomize(Generator(g_cfg), 1), randomize(Generator(g_cfg), 2)
    D = randomize(Discriminator(d_cfg), 3)
    return G, G_ema, D


@pytest.fixture(scope="module")
def snapshot(tiny_nets, tmp_path_factory) -> Path:
    G, G_ema, D = tiny_nets
    path = tmp_path_factory.mktemp("nvlabs") / "network-snapshot-000100.pkl"
    nv.write_network_pickle(path, G=G, D=D, G_ema=G_ema, g_kwargs=nv.nvlabs_generator_kwargs(G.config),
                            d_kwargs=nv.nvlabs_discriminator_kwargs(D.config))
    return path


def write_g(path: Path, G, kwargs=None, **kw) -> Path:
    nv.write_network_pickle(path, G=G, G_ema=G, g_kwargs=kwargs or nv.nvlabs_generator_kwargs(G.config), **kw)
    return path


def convert_cli(capsys, *args) -> tuple[int, str, str]:
    rc = cli_main(["convert", "stylegan2", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_same_state(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    a, b = model.state_dict(), reference.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def images(G, seed: int = 0, n: int = 2) -> torch.Tensor:
    z = torch.randn(n, G.config.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, None, truncation_psi=0.7, noise_mode="const")


# ----------------------------------------------------------------------------------------------
# NVlabs pickles that convert.


def test_tiny_generator_pickle_converts_exactly(snapshot, tiny_nets, tmp_path, capsys):
    Generator, _, _, _ = networks()
    _, G_ema, _ = tiny_nets
    out = tmp_path / "g_ema"
    rc, stdout, err = convert_cli(capsys, snapshot, out)
    assert rc == 0, err
    assert {"config.json", "model.safetensors"} <= set(os.listdir(out))
    loaded = Generator.from_pretrained(out)
    assert loaded.config == G_ema.config
    assert_same_state(loaded, G_ema)
    diff = (images(loaded) - images(G_ema)).abs().max().item()
    assert diff < 1e-4
    params = sum(p.numel() for p in G_ema.parameters())
    assert "32x32" in stdout and f"{params:,} parameters" in stdout and "num_ws 8" in stdout
    assert "NVlabs pickle" in stdout


def test_which_g_and_d(snapshot, tiny_nets, tmp_path, capsys):
    Generator, _, Discriminator, _ = networks()
    G, G_ema, D = tiny_nets
    rc, _, err = convert_cli(capsys, snapshot, tmp_path / "g", "--which", "G")
    assert rc == 0, err
    assert_same_state(Generator.from_pretrained(tmp_path / "g"), G)
    rc, stdout, err = convert_cli(capsys, snapshot, tmp_path / "d", "--which", "D")
    assert rc == 0, err
    d = Discriminator.from_pretrained(tmp_path / "d")
    assert isinstance(d, Discriminator) and d.config == D.config
    assert_same_state(d, D)
    img = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (d(img, None) - D(img, None)).abs().max().item() < 1e-5
    assert "discriminator: 32x32" in stdout


def test_api_loads_pickle_and_folder(snapshot, tiny_nets, tmp_path):
    from generation.stylegan2.convert import convert_stylegan2, load_stylegan2

    Generator, _, Discriminator, _ = networks()
    _, G_ema, D = tiny_nets
    g = load_stylegan2(snapshot)
    assert isinstance(g, Generator) and not g.training
    assert_same_state(g, G_ema)
    convert_stylegan2(snapshot, tmp_path / "d", which="D")
    assert isinstance(load_stylegan2(tmp_path / "d", which="D"), Discriminator)
    with pytest.raises(CheckpointError, match="holds a StyleGAN2 discriminator, but a generator was asked for"):
        load_stylegan2(tmp_path / "d")
    with pytest.raises(CheckpointError, match="which='bad' is not one of G_ema, G, D"):
        load_stylegan2(snapshot, which="bad")


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_stylegan3_repo_layout_protocols_and_plain_torch_modules(tiny_nets, tmp_path, protocol):
    """StyleGAN3-repository StyleGAN2 pickles keep synthesis settings at the top level; some modules
    may be ordinary torch.nn modules; older pickle protocols name globals differently."""
    from generation.stylegan2.convert import load_stylegan2_with_info

    _, G_ema, _ = tiny_nets
    path = write_g(tmp_path / "sg3repo.pkl", G_ema, nv.nvlabs_generator_kwargs(G_ema.config, nested=False),
                   plain_torch=("mapping", "synthesis.b8"), protocol=protocol)
    rec = read_network_pickle(path).networks["G_ema"]
    assert rec.module_classes["mapping"] == "ModuleList" and rec.module_classes["synthesis.b8.conv0"] != "ModuleList"
    g, info = load_stylegan2_with_info(path)
    assert g.config == G_ema.config
    assert_same_state(g, G_ema)
    assert info.notes == ["ignored run-time settings: fused_modconv_default"]


def test_defaults_apply_for_missing_settings(tiny_nets, tmp_path):
    """TF-converted pickles (ffhq.pkl) record only some settings; NVlabs defaults fill the rest."""
    from generation.stylegan2.convert import generator_config_from_nvlabs

    _, G_ema, _ = tiny_nets
    kw = nv.EasyDict(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
                     mapping_kwargs=nv.EasyDict(num_layers=2), synthesis_kwargs=nv.EasyDict(channel_base=256,
                                                                                            channel_max=32))
    rec = read_network_pickle(write_g(tmp_path / "defaults.pkl", G_ema, kw)).networks["G_ema"]
    cfg, notes = generator_config_from_nvlabs(rec)
    assert (cfg.mapping_lr_multiplier, cfg.w_avg_beta, cfg.num_fp16_res, cfg.conv_clamp, cfg.architecture) == (
        0.01, 0.995, 0, None, "skip")
    assert notes == []


def test_numpy_scalars_and_old_numpy_names(tmp_path):
    """NVlabs modules hold numpy scalars (weight_gain); pickles from numpy 1.x name numpy.core."""
    m = torch.nn.Linear(2, 2)
    obj = {"G": nv.to_persistent(m, init_kwargs={"gain": np.float64(0.5), "n": np.int64(3), "ok": np.bool_(True)})}
    with nv.fake_nvlabs_modules():
        data = pickle.dumps(obj, protocol=2)
    assert b"numpy._core.multiarray\nscalar" in data or b"numpy.core.multiarray\nscalar" in data
    path = tmp_path / "old_numpy.pkl"
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    rec = read_network_pickle(path).networks["G"]
    assert rec.init_kwargs == {"gain": 0.5, "n": 3, "ok": True}
    assert type(rec.init_kwargs["gain"]) is float
    assert torch.equal(rec.state_dict["weight"], m.weight)


# ----------------------------------------------------------------------------------------------
# Refusals: each with its message, nothing run, nothing written.


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "a payload in a refused file was executed"


class Reduce:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("where", ["top", "state", "init_kwargs", "tensor"])
def test_os_system_payload_refused_without_running(where, tmp_path, marker, capsys):
    payload = Reduce(os.system, f"touch {marker}")
    m = torch.nn.Linear(2, 2)
    kw = nv.EasyDict(z_dim=2)
    extra = {}
    if where == "init_kwargs":
        kw["evil"] = payload
    elif where == "state":
        extra = {"evil": payload}
    elif where == "tensor":
        m.register_buffer("w_avg", torch.zeros(2))
        m._buffers["w_avg"] = payload  # type: ignore[assignment]
    data = {"G": nv.to_persistent(m, init_kwargs=kw, extra=extra), "G_ema": None, "D": None}
    if where == "top":
        data["training_set_kwargs"] = payload
    path = tmp_path / "evil.pkl"
    nv.dump(data, path)
    with pytest.raises(CheckpointError) as e:
        read_network_pickle(path)
    assert str(e.value) == (f"refusing to load {path}: the pickle asks for os.system, which a StyleGAN2 "
                            f"network pickle never needs (the file may be malicious). Nothing in it was run.")
    rc, out, err = convert_cli(capsys, path, tmp_path / "out")
    assert rc == 2 and err.startswith("error: refusing to load") and "os.system" in err and out == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("func, arg, shown", [
    (eval, "open({m!r}, 'w')", "builtins.eval"),
    (exec, "open({m!r}, 'w')", "builtins.exec"),
    (open, "{m}", "io.open"),
    (__import__, "os", "builtins.__import__"),
])
def test_other_payloads_refused(func, arg, shown, tmp_path, marker):
    args = (arg.format(m=str(marker)),)
    path = tmp_path / "evil.pkl"
    nv.dump({"G_ema": Reduce(func, *args)}, path)
    with pytest.raises(CheckpointError, match=f"refusing to load .*: the pickle asks for {shown},"):
        read_network_pickle(path)


def test_payload_in_tensor_storage_bytes_refused(tmp_path, marker):
    """Tensor storages are nested torch.save files; they are read with weights_only=True."""
    evil = pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "evil_storage.pkl"
    fake_tensor = Reduce(torch._utils._rebuild_tensor_v2, Reduce(torch.storage._load_from_bytes, evil), 0, (1,),
                         (1,), False, {})
    m = torch.nn.Linear(1, 1)
    m._buffers["w_avg"] = fake_tensor  # type: ignore[assignment]
    nv.dump({"G_ema": nv.to_persistent(m)}, path)
    with pytest.raises(CheckpointError, match="tensor storage in the pickle asks for something other than "
                                              "tensor data, so it was refused"):
        read_network_pickle(path)


def test_embedded_module_source_is_never_executed(tmp_path, marker):
    m = torch.nn.Linear(2, 2)
    src = f"open({str(marker)!r}, 'w').write('ran')\nclass Generator: pass\n"
    nv.dump({"G_ema": nv.to_persistent(m, class_name="Generator", module_src=src)}, tmp_path / "src.pkl")
    rec = read_network_pickle(tmp_path / "src.pkl").networks["G_ema"]
    assert rec.module_src == src and rec.class_name == "Generator"
    assert torch.equal(rec.state_dict["weight"], m.weight)


def test_truncated_pickle(snapshot, tmp_path, capsys):
    data = snapshot.read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        read_network_pickle(path)
    assert str(e.value).startswith(f"{path} is truncated or damaged: the pickle stream ends early or is corrupt (")
    assert str(e.value).endswith("Download or copy it again.")
    for cut in (3, 100, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|damaged"):
            read_network_pickle(path)
    rc, _, err = convert_cli(capsys, path, tmp_path / "out")
    assert rc == 2 and err.startswith(f"error: {path} is truncated or damaged")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, what", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "it is a PNG image"),
    (b"hello, this is a README\n", "it looks like text"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "it is a Git LFS pointer, not the data"),
    (bytes(range(1, 40)), "it starts with bytes 01 02 03 04 05 06 07 08"),
])
def test_not_a_pickle(content, what, tmp_path):
    path = tmp_path / "ffhq.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        read_network_pickle(path)
    assert str(e.value) == (f"{path} is not a network pickle or PyTorch checkpoint ({what}). Pass an NVlabs "
                            f"StyleGAN2 .pkl, a rosinality .pt or a converted model folder.")


def test_empty_and_missing_files(tmp_path):
    from generation.stylegan2.convert import load_stylegan2

    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pkl is empty \(0 bytes\)"):
        load_stylegan2(tmp_path / "empty.pkl")
    with pytest.raises(CheckpointError, match="nope.pkl does not exist"):
        load_stylegan2(tmp_path / "nope.pkl")


def test_pickle_without_networks(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"epoch": 3, "loss": 0.5}))
    with pytest.raises(CheckpointError) as e:
        read_network_pickle(path)
    assert str(e.value) == (f"{path} is a pickle but not a StyleGAN2 network pickle: it holds a dict with "
                            f"epoch, loss, but no network under G, D or G_ema.")
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="it holds a list, not a dict with G, D and G_ema"):
        read_network_pickle(path)


def test_missing_network_key(tiny_nets, tmp_path):
    from generation.stylegan2.convert import load_stylegan2

    _, G_ema, _ = tiny_nets
    path = tmp_path / "only_g.pkl"
    nv.write_network_pickle(path, G_ema=G_ema, g_kwargs=nv.nvlabs_generator_kwargs(G_ema.config))
    with pytest.raises(CheckpointError, match=r"only_g.pkl has no D network \(it holds G_ema\)"):
        load_stylegan2(path, which="D")


def test_discriminator_where_generator_expected(tiny_nets, tmp_path, capsys):
    _, _, D = tiny_nets
    path = tmp_path / "swapped.pkl"
    nv.write_network_pickle(path, G_ema=D, g_kwargs=nv.nvlabs_discriminator_kwargs(D.config))
    rc, _, err = convert_cli(capsys, path, tmp_path / "out")
    assert rc == 2
    assert err == (f"error: {path}: 'G_ema' holds a Discriminator where a generator is expected. "
                   f"Pass --which D (which='D') to convert the discriminator.\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("variant", ["kwargs", "input_module", "layer_names"])
def test_stylegan3_refused(variant, tiny_nets, tmp_path, capsys):
    _, G_ema, _ = tiny_nets
    kw = nv.nvlabs_generator_kwargs(G_ema.config, nested=False)
    net = torch.nn.Module()
    net.mapping = torch.nn.Module()
    net.synthesis = torch.nn.Module()
    if variant == "kwargs":
        kw.update(magnitude_ema_beta=0.999, conv_kernel=3)
    elif variant == "input_module":
        net.synthesis.input = torch.nn.Linear(2, 2)
    else:
        net.synthesis.add_module("L0_36_512", torch.nn.Linear(2, 2))
    obj = nv.to_persistent(net, init_kwargs=kw, class_name="Generator")
    if variant == "input_module":
        synthesis = obj.meta["state"]["_modules"]["synthesis"]
        synthesis.meta["state"]["_modules"]["input"].meta["class_name"] = "SynthesisInput"
    path = tmp_path / "stylegan3-t-ffhq-1024x1024.pkl"
    nv.dump({"G_ema": obj, "G": obj, "D": None}, path)
    rc, _, err = convert_cli(capsys, path, tmp_path / "out")
    assert rc == 2
    assert err.startswith(f"error: {path}: 'G_ema' is a StyleGAN3 generator (")
    assert err.endswith("); StyleGAN3 is not supported. Only StyleGAN2 and StyleGAN2-ADA generators can be "
                        "converted.\n")
    assert not (tmp_path / "out").exists()


def test_conditional_refused(tiny_nets, tmp_path, capsys):
    _, G_ema, D = tiny_nets
    kw = nv.nvlabs_generator_kwargs(G_ema.config)
    kw["c_dim"] = 10
    dkw = nv.nvlabs_discriminator_kwargs(D.config)
    dkw["c_dim"] = 10
    path = tmp_path / "cifar10.pkl"
    nv.write_network_pickle(path, G_ema=G_ema, D=D, g_kwargs=kw, d_kwargs=dkw)
    for which in ("G_ema", "D"):
        rc, _, err = convert_cli(capsys, path, tmp_path / "out", "--which", which)
        assert rc == 2
        assert err == (f"error: {path}: '{which}' is conditional (c_dim=10: it takes class labels); conditional "
                       f"models are not supported. Convert an unconditional StyleGAN2 model (c_dim=0).\n")
    assert not (tmp_path / "out").exists()


def test_weights_that_contradict_settings(tiny_nets, tmp_path):
    from generation.stylegan2.convert import load_stylegan2

    _, G_ema, _ = tiny_nets
    kw = nv.nvlabs_generator_kwargs(G_ema.config)
    kw["synthesis_kwargs"]["channel_max"] = 16
    with pytest.raises(CheckpointError, match=r"the generator's weights do not match the settings it records "
                                              r"\(\d+ shape mismatch"):
        load_stylegan2(write_g(tmp_path / "bad.pkl", G_ema, kw))


def test_unsupported_generator_settings(tiny_nets, tmp_path):
    from generation.stylegan2.convert import load_stylegan2

    _, G_ema, _ = tiny_nets
    kw = nv.nvlabs_generator_kwargs(G_ema.config)
    kw["synthesis_kwargs"]["resample_filter"] = [1, 2, 1]
    with pytest.raises(CheckpointError, match=r"uses resample_filter=\[1, 2, 1\], which our StyleGAN2 Generator "
                                              r"does not implement"):
        load_stylegan2(write_g(tmp_path / "filter.pkl", G_ema, kw))


def test_cli_subprocess_error_and_no_output(tmp_path, marker, cli):
    """The real console entry point: one line on stderr, exit status 2, no traceback, no folder."""
    path = tmp_path / "evil.pkl"
    nv.dump({"G_ema": Reduce(os.system, f"touch {marker}")}, path)
    result = cli("convert", "stylegan2", path, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith("error: refusing to load") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# rosinality checkpoints.


def test_infer_channel_layout_of_rosinality_tables():
    from generation.stylegan2.convert import _infer_channel_layout

    def table(cm: int, size: int) -> dict[int, int]:
        full = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
                1024: 16 * cm}
        return {r: c for r, c in full.items() if r <= size}

    assert _infer_channel_layout(table(2, 1024), "generator", "x") == (32768, 512)  # config-f
    assert _infer_channel_layout(table(1, 256), "generator", "x") == (16384, 512)
    assert _infer_channel_layout(ROS_CHANNELS, "generator", "x") == (256, 32)
    assert _infer_channel_layout(table(2, 16), "generator", "x") == (32768, 512)  # all at max: NVlabs' value
    with pytest.raises(CheckpointError, match=r"channel counts per resolution \(4: 8, 8: 16\) do not follow"):
        _infer_channel_layout({4: 8, 8: 16}, "generator", "x")


@pytest.fixture(scope="module")
def ros_ckpt(tmp_path_factory):
    g_ema = ros.make_generator_state(32, 32, 2, ROS_CHANNELS, seed=7)
    g = ros.make_generator_state(32, 32, 2, ROS_CHANNELS, seed=8)
    d = ros.make_discriminator_state(32, ROS_CHANNELS, seed=9)
    latent_avg = ros.mapping(g_ema, torch.randn(64, 32, generator=torch.Generator().manual_seed(1))).mean(0)
    path = tmp_path_factory.mktemp("ros") / "stylegan2-tiny.pt"
    torch.save({"g_ema": g_ema, "g": g, "d": d, "latent_avg": latent_avg}, path)
    return path, g_ema, g, d, latent_avg


def test_rosinality_generator_matches_reference_forward(ros_ckpt, tmp_path, capsys):
    Generator, _, _, _ = networks()
    path, g_ema, _, _, latent_avg = ros_ckpt
    rc, stdout, err = convert_cli(capsys, path, tmp_path / "g")
    assert rc == 0, err
    assert "rosinality checkpoint" in stdout and "mapping lr multiplier taken as 0.01" in stdout
    G = Generator.from_pretrained(tmp_path / "g")
    c = G.config
    assert (c.z_dim, c.w_dim, c.img_resolution, c.mapping_layers, c.channel_base, c.channel_max) == (32, 32, 32, 2,
                                                                                                     256, 32)
    assert torch.equal(G.mapping.w_avg, latent_avg)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ws = G.mapping(z, None)
        w_ref = ros.mapping(g_ema, z)
        assert ws.shape == (3, 8, 32)
        assert (ws[:, 0] - w_ref).abs().max().item() < 1e-4
        wplus = torch.randn(3, 8, 32, generator=torch.Generator().manual_seed(3))
        ours = G.synthesis(wplus, noise_mode="const")
        ref = ros.synthesis(g_ema, wplus)
        assert ref.abs().max().item() > 0.1  # a real image, not zeros
        assert (ours - ref).abs().max().item() < 1e-4
        # truncation with latent_avg == NVlabs' w_avg
        img = G(z, None, truncation_psi=0.5, noise_mode="const")
        w_trunc = latent_avg + 0.5 * (w_ref - latent_avg)
        assert (img - ros.synthesis(g_ema, w_trunc[:, None].repeat(1, 8, 1))).abs().max().item() < 1e-4
        # without noise
        assert (G.synthesis(wplus, noise_mode="none") - ros.synthesis(g_ema, wplus, use_noise=False)).abs().max() < 1e-4


def test_rosinality_discriminator_matches_reference_forward(ros_ckpt, tmp_path, capsys):
    _, _, Discriminator, _ = networks()
    path, _, _, d_state, _ = ros_ckpt
    rc, stdout, err = convert_cli(capsys, path, tmp_path / "d", "--which", "D")
    assert rc == 0, err
    D = Discriminator.from_pretrained(tmp_path / "d")
    assert (D.config.architecture, D.config.channel_base, D.config.channel_max, D.config.mbstd_group_size) == (
        "resnet", 256, 32, 4)
    img = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, ref = D(img, None), ros.discriminator(d_state, img)
    assert ours.shape == ref.shape == (4, 1)
    assert (ours - ref).abs().max().item() < 1e-4


def test_rosinality_training_checkpoint_and_bare_state_dict(ros_ckpt, tmp_path):
    from generation.stylegan2.convert import load_stylegan2, load_stylegan2_with_info

    _, g_ema, g, _, _ = ros_ckpt
    path = tmp_path / "030000.pt"
    args = argparse.Namespace(size=32, latent=32, n_mlp=2, channel_multiplier=2)
    torch.save({"g": g, "g_ema": g_ema, "args": args, "ada_aug_p": 0.1, "g_optim": {"state": {}}}, path)
    G, info = load_stylegan2_with_info(path, which="G")
    wplus = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (G.synthesis(wplus, noise_mode="const") - ros.synthesis(g, wplus)).abs().max() < 1e-4
        expected_avg = G.mapping(torch.randn(10000, 32, generator=torch.Generator().manual_seed(0)), None)[:, 0].mean(0)
    assert any("no latent_avg" in n for n in info.notes)
    assert torch.allclose(G.mapping.w_avg, expected_avg, atol=1e-5)
    bare = tmp_path / "g_ema_only.pt"
    torch.save({f"module.{k}": v for k, v in g_ema.items()}, bare)  # a DDP-prefixed bare state dict
    with torch.no_grad():
        from_bare = load_stylegan2(bare).synthesis(wplus, noise_mode="const")
        assert (from_bare - ros.synthesis(g_ema, wplus)).abs().max() < 1e-4


def test_rosinality_refusals(ros_ckpt, tmp_path, marker):
    from generation.stylegan2.convert import load_stylegan2

    _, g_ema, _, _, _ = ros_ckpt
    evil = tmp_path / "evil.pt"
    torch.save({"g_ema": g_ema, "x": Reduce(os.system, f"touch {marker}")}, evil)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pt: the checkpoint asks for os.system"):
        load_stylegan2(evil)
    data = (tmp_path / "ok.pt")
    torch.save({"g_ema": g_ema}, data)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"trunc.pt is not a readable PyTorch checkpoint .*it may be truncated"):
        load_stylegan2(trunc)
    with pytest.raises(CheckpointError, match=r"ok.pt has no D network \(rosinality key 'd'\); it holds G_ema"):
        load_stylegan2(data, which="D")
    swagan = dict(g_ema, **{"to_rgbs.0.iwt.ll": torch.zeros(1)})
    torch.save({"g_ema": swagan}, tmp_path / "swagan.pt")
    with pytest.raises(CheckpointError, match=r"entries a StyleGAN2 generator does not: to_rgbs.0.iwt.ll"):
        load_stylegan2(tmp_path / "swagan.pt")
    custom = dict(g_ema, **{"convs.0.conv.blur.kernel": torch.ones(4, 4) / 4})
    torch.save({"g_ema": custom}, tmp_path / "blur.pt")
    with pytest.raises(CheckpointError, match="is a custom blur kernel"):
        load_stylegan2(tmp_path / "blur.pt")
    torch.save({"state_dict": {"generator_ema.constant_input.input": torch.zeros(1)}}, tmp_path / "mmagic.pth")
    with pytest.raises(CheckpointError, match="mmagic checkpoints are not supported"):
        load_stylegan2(tmp_path / "mmagic.pth")
    with nv.fake_nvlabs_modules():
        torch.save({"G_ema": nv.to_persistent(torch.nn.Linear(1, 1))}, tmp_path / "torch_saved_nvlabs.pt")
    with pytest.raises(CheckpointError, match="holds whole NVlabs network objects saved with torch.save"):
        load_stylegan2(tmp_path / "torch_saved_nvlabs.pt")
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a rosinality StyleGAN2 checkpoint: it holds model, not g_ema"):
        load_stylegan2(tmp_path / "other.pt")


def test_invalid_recorded_settings(tiny_nets, tmp_path):
    from generation.stylegan2.convert import load_stylegan2

    _, G_ema, _ = tiny_nets
    kw = nv.nvlabs_generator_kwargs(G_ema.config)
    kw["img_resolution"] = 48
    with pytest.raises(CheckpointError, match=r"'G_ema' records settings our networks cannot take \(.*power of two"):
        load_stylegan2(write_g(tmp_path / "res48.pkl", G_ema, kw))
