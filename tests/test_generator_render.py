"""The two shared pieces of a trained StyleGAN2 generator's consumers: ``Generator.render`` (the one
way W+ codes become images) and the ``GeneratorBound`` mixin (the one ``check_generator``)."""

import pytest
import torch

import nvlabs_pickle as nv
import rosinality_ref as ros
from generation.editing.encoder import LatentEncoder, config_for_generator as encoder_config
from generation.editing.mapper import EditMapper, MapperConfig
from generation.stylegan2.config import StyleGAN2Config
from generation.stylegan2.convert import load_stylegan2
from generation.stylegan2.fingerprint import GeneratorBound, generator_fingerprint
from generation.stylegan2.networks import Generator
from generation.superres.modeling_sr import SRModel, config_for_generator as sr_config
from hdvila.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=1, channel_base=128, channel_max=16)


def tiny_generator(seed: int = 0, **changes) -> Generator:
    torch.manual_seed(seed)
    G = Generator(StyleGAN2Config(**{**TINY, **changes})).eval()
    with torch.no_grad():  # non-zero noise gains: the stored noise maps matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G


# ----------------------------------------------------------------------------------------------
# Generator.render


@pytest.mark.parametrize("fused_modconv", [None, False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_render_is_const_noise_fp32_synthesis(fused_modconv, n):
    G = tiny_generator()
    ws = torch.randn(n, G.num_ws, G.w_dim)
    with torch.no_grad():
        img = G.render(ws, fused_modconv=fused_modconv)
        ref = G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=fused_modconv)
        assert img.shape == (n, 3, 16, 16) and img.dtype == torch.float32
        assert torch.equal(img, ref)
        assert torch.equal(G.render(ws, fused_modconv=fused_modconv), img)  # deterministic
        assert torch.equal(G.render(ws[:, 0], fused_modconv=fused_modconv),  # W broadcast to W+
                           G.render(ws[:, :1].expand(-1, G.num_ws, -1), fused_modconv=fused_modconv))


def test_render_features_gradients_and_block_hook():
    G = tiny_generator()
    ws = torch.randn(2, G.num_ws, G.w_dim, requires_grad=True)
    img, feats = G.render(ws, fused_modconv=False, return_features=True)
    ref, ref_feats = G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False, return_features=True)
    assert torch.equal(img, ref) and sorted(feats) == [4, 8, 16]
    assert all(torch.equal(feats[r], ref_feats[r]) and feats[r].dtype == torch.float32 for r in feats)
    img.square().sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    with torch.no_grad():
        seen = []
        same, same_feats = G.render(ws, return_features=True, block_hook=lambda res, x: seen.append(res) or x)
        assert seen == [4, 8, 16] and torch.equal(same, G.render(ws))
        # The hook's output is what the next block reads, and what is recorded as the feature.
        changed, changed_feats = G.render(ws, return_features=True, block_hook=lambda res, x: 2 * x if res == 8 else x)
        assert torch.equal(changed_feats[4], same_feats[4]) and torch.equal(changed_feats[8], 2 * same_feats[8])
        assert not torch.allclose(changed, same)


def test_loaded_generators_render(tmp_path):
    """NVlabs pickles, rosinality checkpoints and model folders all load as a Generator with ``render``."""
    G = tiny_generator()
    ws = torch.randn(2, G.num_ws, G.w_dim)
    nv.write_network_pickle(tmp_path / "g.pkl", G=G, G_ema=G, g_kwargs=nv.nvlabs_generator_kwargs(G.config))
    G.save_pretrained(tmp_path / "folder")
    with torch.no_grad():
        expected = G.render(ws)
        for path in (tmp_path / "g.pkl", tmp_path / "folder"):
            assert torch.equal(load_stylegan2(path).render(ws), expected)
        g_ema = ros.make_generator_state(16, 16, 1, {4: 16, 8: 16, 16: 8}, seed=3)
        torch.save({"g_ema": g_ema}, tmp_path / "ros.pt")
        wplus = torch.randn(2, 6, 16)
        assert (load_stylegan2(tmp_path / "ros.pt").render(wplus) - ros.synthesis(g_ema, wplus)).abs().max() < 1e-4


# ----------------------------------------------------------------------------------------------
# GeneratorBound.check_generator


def _encoder(G):
    return LatentEncoder(encoder_config(G, channels=8, head_channels=8))


def _mapper(G):
    fp = generator_fingerprint(G)
    return EditMapper(MapperConfig(w_dim=fp["w_dim"], num_ws=fp["num_ws"], resolution=fp["img_resolution"],
                                   embed_dim=16, hidden=32, generator_digest=fp["digest"]))


def _sr(G):
    return SRModel(sr_config(G, scale=4, text_dim=8, encoder_channels=8, decoder_channels=8, text_hidden=16))


MODELS = {"this latent encoder": (_encoder, "generation/train_encoder.py --generator"),
          "this edit mapper": (_mapper, "generation/train_mapper.py --generator"),
          "this super-resolution model": (_sr, "generation/train_sr.py --generator")}


@pytest.mark.parametrize("what", sorted(MODELS))
def test_check_generator_refuses_another_generator(what):
    make, remedy = MODELS[what]
    G = tiny_generator()
    model = make(G)
    assert isinstance(model, GeneratorBound) and model.generator_user == what
    model.check_generator(G)
    with pytest.raises(CheckpointError) as e:
        model.check_generator(tiny_generator(seed=5), source="--generator other")
    msg = str(e.value)
    assert msg.startswith(f"--generator other has the right shape but is not the generator {what} was trained with")
    assert "digest" in msg and remedy in msg
    with pytest.raises(CheckpointError) as e:
        model.check_generator(tiny_generator(w_dim=8, img_resolution=32))
    msg = str(e.value)
    assert msg.startswith(f"the generator does not fit {what}: ") and remedy in msg
    assert "img_resolution 32 (expected 16)" in msg and "w_dim 8 (expected 16)" in msg


def test_sr_model_also_checks_the_channels():
    G = tiny_generator()
    sr = _sr(G)
    other = tiny_generator(channel_max=8)  # same resolution, w_dim and num_ws; narrower blocks
    with pytest.raises(CheckpointError, match=r"does not fit this super-resolution model: channels \[8, 8, 8\] "
                                              r"\(expected \[16, 16, 8\]\)"):
        sr.check_generator(other)
    with pytest.raises(CheckpointError, match="not the generator this latent encoder"):
        _encoder(G).check_generator(other)  # the encoder records no channels: only the digest tells them apart
