"""StyleGAN2 networks: NVlabs state-dict names/shapes and parameter counts, mapping/truncation,
noise modes, W vs W+, modulated convolution, save/load, forward/backward incl. R1 and path length."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config
from generation.stylegan2.layers import FullyConnectedLayer, MinibatchStdLayer
from generation.stylegan2.ops import modulated_conv2d, setup_filter
from generation.stylegan2.ops.conv2d_resample import _conv2d_resample_generic
from hdvila.errors import CheckpointError

# 16px, channels min(256 // res, 32): 32 at 4 and 8, 16 at 16.
TINY_G = StyleGAN2Config(z_dim=16, w_dim=24, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=32)
TINY_D = DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=32, mbstd_group_size=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (fixture in conftest.py)


def tiny_generator(**changes) -> Generator:
    torch.manual_seed(0)
    return Generator(dataclasses.replace(TINY_G, **changes)).eval()


def randomize_noise_strength(G: Generator, value: float = 0.5) -> None:
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(value)


# ------------------------------------------------------------------------------------------------
# Names and shapes (NVlabs StyleGAN2-ADA G_ema / D state dicts, /work/shared/docs/anchors.md §1)

def synthesis_layer(prefix: str, out_ch: int, in_ch: int, res: int, w_dim: int) -> dict:
    return {f"{prefix}.weight": (out_ch, in_ch, 3, 3), f"{prefix}.bias": (out_ch,),
            f"{prefix}.affine.weight": (in_ch, w_dim), f"{prefix}.affine.bias": (in_ch,),
            f"{prefix}.noise_strength": (), f"{prefix}.noise_const": (res, res), f"{prefix}.resample_filter": (4, 4)}


def torgb(prefix: str, in_ch: int, w_dim: int) -> dict:
    return {f"{prefix}.weight": (3, in_ch, 1, 1), f"{prefix}.bias": (3,),
            f"{prefix}.affine.weight": (in_ch, w_dim), f"{prefix}.affine.bias": (in_ch,)}


def conv(prefix: str, out_ch: int, in_ch: int, k: int, bias: bool = True) -> dict:
    d = {f"{prefix}.weight": (out_ch, in_ch, k, k), f"{prefix}.resample_filter": (4, 4)}
    if bias:
        d[f"{prefix}.bias"] = (out_ch,)
    return d


def test_generator_state_dict_matches_nvlabs_names_and_shapes():
    w = 24
    expected = {
        "mapping.fc0.weight": (24, 16), "mapping.fc0.bias": (24,),
        "mapping.fc1.weight": (24, 24), "mapping.fc1.bias": (24,),
        "mapping.w_avg": (24,),
        "synthesis.b4.const": (32, 4, 4), "synthesis.b4.resample_filter": (4, 4),
        **synthesis_layer("synthesis.b4.conv1", 32, 32, 4, w), **torgb("synthesis.b4.torgb", 32, w),
        "synthesis.b8.resample_filter": (4, 4),
        **synthesis_layer("synthesis.b8.conv0", 32, 32, 8, w), **synthesis_layer("synthesis.b8.conv1", 32, 32, 8, w),
        **torgb("synthesis.b8.torgb", 32, w),
        "synthesis.b16.resample_filter": (4, 4),
        **synthesis_layer("synthesis.b16.conv0", 16, 32, 16, w),
        **synthesis_layer("synthesis.b16.conv1", 16, 16, 16, w),
        **torgb("synthesis.b16.torgb", 16, w),
    }
    got = {k: tuple(v.shape) for k, v in tiny_generator().state_dict().items()}
    assert got == expected


def test_discriminator_state_dict_matches_nvlabs_names_and_shapes():
    expected = {
        "b16.resample_filter": (4, 4), **conv("b16.fromrgb", 16, 3, 1), **conv("b16.conv0", 16, 16, 3),
        **conv("b16.conv1", 32, 16, 3), **conv("b16.skip", 32, 16, 1, bias=False),
        "b8.resample_filter": (4, 4), **conv("b8.conv0", 32, 32, 3), **conv("b8.conv1", 32, 32, 3),
        **conv("b8.skip", 32, 32, 1, bias=False),
        **conv("b4.conv", 32, 33, 3),  # +1 minibatch-std channel
        "b4.fc.weight": (32, 32 * 16), "b4.fc.bias": (32,), "b4.out.weight": (1, 32), "b4.out.bias": (1,),
    }
    got = {k: tuple(v.shape) for k, v in Discriminator(TINY_D).state_dict().items()}
    assert got == expected


def test_buffers_are_buffers_and_parameters_are_parameters():
    G = tiny_generator()
    params = dict(G.named_parameters())
    buffers = dict(G.named_buffers())
    assert "mapping.w_avg" in buffers and "synthesis.b8.conv0.noise_const" in buffers
    assert "synthesis.b8.resample_filter" in buffers
    assert "synthesis.b8.conv0.noise_strength" in params and "synthesis.b4.const" in params
    torch.testing.assert_close(buffers["synthesis.b8.resample_filter"], setup_filter([1, 3, 3, 1]))
    assert torch.all(G.synthesis.b8.conv0.affine.bias == 1)  # affine bias initialised to 1
    assert torch.all(G.mapping.w_avg == 0)


@pytest.mark.parametrize("resolution,count", [(1024, 30_370_060), (512, 30_276_583), (256, 30_034_338)])
def test_config_f_parameter_counts_on_meta(resolution, count):
    """anchors.md §1: NVlabs config-f parameter counts (z=w=512, 8 mapping layers)."""
    with torch.device("meta"):
        G = Generator(StyleGAN2Config(img_resolution=resolution))
    assert all(p.is_meta for p in G.parameters())
    assert sum(p.numel() for p in G.parameters()) == count
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2
    with torch.device("meta"):
        D = Discriminator(DiscriminatorConfig(img_resolution=resolution))
    assert D.b4.fc.weight.shape == (512, 512 * 16)
    assert getattr(D, f"b{resolution}").fromrgb.weight.shape[1] == 3


def test_other_architectures_and_configs():
    G = tiny_generator(architecture="resnet")
    keys = G.state_dict().keys()
    assert "synthesis.b8.skip.weight" in keys and "synthesis.b8.torgb.weight" not in keys
    assert "synthesis.b16.torgb.weight" in keys  # last block always has ToRGB
    assert G(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    assert tiny_generator(architecture="orig")(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    D = Discriminator(dataclasses.replace(TINY_D, architecture="skip"))
    assert "b8.fromrgb.weight" in D.state_dict() and "b4.fromrgb.weight" in D.state_dict()
    assert D(torch.randn(2, 3, 16, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match="not supported"):
        StyleGAN2Config(c_dim=10)
    with pytest.raises(ValueError, match="not supported"):
        DiscriminatorConfig(c_dim=10)
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(img_resolution=48)


# ------------------------------------------------------------------------------------------------
# Layers and mapping

def test_fully_connected_equalized_lr_at_run_time():
    torch.manual_seed(1)
    fc = FullyConnectedLayer(in_features=4, out_features=3, lr_multiplier=0.01, bias_init=2.0)
    x = torch.randn(5, 4)
    expected = x @ (fc.weight * 0.01 / 2).T + fc.bias * 0.01
    torch.testing.assert_close(fc(x), expected)
    assert fc.weight.std() > 10  # stored as N(0,1)/lr_multiplier


def test_minibatch_std_groups_strided_samples():
    torch.manual_seed(2)
    x = torch.randn(4, 2, 3, 3)
    y = MinibatchStdLayer(group_size=2, num_channels=1)(x)
    assert y.shape == (4, 3, 3, 3)
    for members in ([0, 2], [1, 3]):  # group g holds samples i, i + N/G
        std = x[members].std(dim=0, unbiased=False).mean()
        for i in members:
            torch.testing.assert_close(y[i, 2], torch.full((3, 3), std.item()), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 3, 3))


def test_truncation_math():
    G = tiny_generator()
    torch.manual_seed(3)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(24))
    z = torch.randn(3, 16)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, 24) and torch.equal(ws[:, 0], ws[:, -1])
    avg = G.mapping.w_avg
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.7), avg + 0.7 * (ws - avg))
    torch.testing.assert_close(G.mapping(z, truncation_psi=0), avg.expand_as(ws))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], avg + 0.5 * (ws[:, :2] - avg))
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:])


def test_w_avg_tracks_batch_mean_only_when_asked():
    G = tiny_generator()
    z = torch.randn(8, 16)
    G.mapping(z)
    assert torch.all(G.mapping.w_avg == 0)
    w = G.mapping(z, update_emas=True)[:, 0]
    torch.testing.assert_close(G.mapping.w_avg, (1 - 0.995) * w.mean(0))


# ------------------------------------------------------------------------------------------------
# Synthesis

def test_noise_modes():
    G = tiny_generator()
    randomize_noise_strength(G)
    ws = G.mapping(torch.randn(2, 16))
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    torch.manual_seed(9)
    r1 = G.synthesis(ws, noise_mode="random")
    torch.manual_seed(9)
    assert torch.equal(r1, G.synthesis(ws, noise_mode="random"))
    none = G.synthesis(ws, noise_mode="none")
    assert not torch.allclose(none, const_a)
    randomize_noise_strength(G, 0.0)
    torch.testing.assert_close(G.synthesis(ws, noise_mode="const"), none)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_w_input_broadcasts_to_w_plus():
    G = tiny_generator()
    w = G.mapping(torch.randn(2, 16))[:, 0]
    torch.testing.assert_close(G.synthesis(w), G.synthesis(w.unsqueeze(1).repeat(1, G.num_ws, 1)))
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.randn(2, G.num_ws - 1, 24))


def test_w_plus_layers_matter_independently():
    G = tiny_generator()
    ws = G.mapping(torch.randn(1, 16))
    base = G.synthesis(ws)
    for i in (0, G.num_ws - 1):
        changed = ws.clone()
        changed[:, i] += 1.0
        assert not torch.allclose(G.synthesis(changed), base)


def test_generator_output_and_features():
    G = tiny_generator()
    z = torch.randn(2, 16)
    img, feats = G.synthesis(G.mapping(z), return_features=True)
    torch.testing.assert_close(img, G(z))
    assert img.shape == (2, 3, 16, 16) and img.dtype == torch.float32 and torch.isfinite(img).all()
    assert sorted(feats) == [4, 8, 16]
    assert [tuple(feats[r].shape) for r in (4, 8, 16)] == [(2, 32, 4, 4), (2, 32, 8, 8), (2, 16, 16, 16)]


def test_fp16_blocks_run_in_fp32_on_cpu():
    G = tiny_generator(num_fp16_res=2, conv_clamp=256)
    assert G.synthesis.b16.use_fp16 and G.synthesis.b8.use_fp16 and not G.synthesis.b4.use_fp16
    ws = G.mapping(torch.randn(2, 16))
    img, feats = G.synthesis(ws, return_features=True)
    assert img.dtype == torch.float32 and all(f.dtype == torch.float32 for f in feats.values())
    torch.testing.assert_close(img, G.synthesis(ws, force_fp32=True), rtol=0, atol=0)


def test_fused_and_unfused_modconv_agree_in_the_network():
    G = tiny_generator()
    ws = G.mapping(torch.randn(3, 16))
    torch.testing.assert_close(G.synthesis(ws, fused_modconv=True), G.synthesis(ws, fused_modconv=False),
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Modulated convolution: one grouped conv over the batch vs a per-sample loop

def per_sample_modconv(x, weight, styles, up, demodulate, flip_weight, f):
    outs = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(_conv2d_resample_generic(x[n:n + 1], w, f=f, up=up, padding=weight.shape[-1] // 2,
                                             flip_weight=flip_weight, impl="ref"))
    return torch.cat(outs)


@pytest.mark.parametrize("up,kernel,demodulate", [(1, 3, True), (2, 3, True), (1, 1, False)])
def test_grouped_modulated_conv_equals_per_sample_loop(up, kernel, demodulate):
    torch.manual_seed(4)
    x = torch.randn(3, 5, 6, 6, dtype=torch.float64)
    weight = torch.randn(7, 5, kernel, kernel, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    kw = dict(up=up, padding=kernel // 2, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    expected = per_sample_modconv(x, weight, styles, up, demodulate, up == 1, f)
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles, fused_modconv=False, **kw), expected)
    noise = torch.randn(1, 1, *expected.shape[2:], dtype=torch.float64)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles, noise=noise, **kw), expected + noise)


def test_modulated_conv_is_one_grouped_convolution(monkeypatch):
    calls = []
    original = F.conv2d

    def counting(*args, **kwargs):
        calls.append(kwargs.get("groups", 1))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, "conv2d", counting)
    x, weight, styles = torch.randn(6, 4, 5, 5), torch.randn(8, 4, 3, 3), torch.randn(6, 4)
    modulated_conv2d(x, weight, styles, padding=1)
    assert calls == [6]  # one convolution for the whole batch, grouped by sample


# ------------------------------------------------------------------------------------------------
# Save / load

def test_save_pretrained_round_trip(tmp_path):
    G = tiny_generator()
    randomize_noise_strength(G)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    G.save_pretrained(tmp_path / "g")
    assert (tmp_path / "g" / "config.json").is_file() and (tmp_path / "g" / "model.safetensors").is_file()
    G2 = Generator.from_pretrained(tmp_path / "g")
    assert G2.config == G.config and not G2.training
    z = torch.randn(2, 16)
    torch.testing.assert_close(G2(z, truncation_psi=0.5), G(z, truncation_psi=0.5), rtol=0, atol=0)

    D = Discriminator(TINY_D)
    D.save_pretrained(tmp_path / "d")
    D2 = Discriminator.from_pretrained(tmp_path / "d")
    img = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(D2(img), D.eval()(img))
    with pytest.raises(CheckpointError, match="stylegan2_generator"):
        Generator.from_pretrained(tmp_path / "d")


# ------------------------------------------------------------------------------------------------
# Training-style passes: forward/backward, R1 and path-length regularisation (double backward)

def test_tiny_generator_and_discriminator_forward_backward():
    G = tiny_generator().train()
    D = Discriminator(TINY_D).train()
    z = torch.randn(4, 16)
    img = G(z, noise_mode="random")
    loss = F.softplus(-D(img)).mean()
    loss.backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert G.synthesis.b4.const.grad.abs().sum() > 0 and G.mapping.fc0.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


def test_r1_and_path_length_double_backward():
    D = Discriminator(TINY_D)
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    (r1_grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    r1_grad.square().sum().backward()
    assert D.b16.conv0.weight.grad.abs().sum() > 0

    G = tiny_generator().train()
    ws = G.mapping(torch.randn(2, 16))
    img = G.synthesis(ws, noise_mode="const")
    (pl_grad,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    pl_grad.square().sum(2).mean(1).sqrt().mean().backward()
    assert G.synthesis.b8.conv0.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# GPU

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_blocks_on_cuda_with_conv_clamp():
    G = tiny_generator(num_fp16_res=2, conv_clamp=256).cuda()
    ws = G.mapping(torch.randn(2, 16, device="cuda"))
    img, feats = G.synthesis(ws, return_features=True)
    assert img.dtype == torch.float32 and feats[16].dtype == torch.float16 and feats[4].dtype == torch.float32
    assert torch.isfinite(img).all()
    torch.testing.assert_close(img, G.synthesis(ws, force_fp32=True), rtol=0.05, atol=0.05)
