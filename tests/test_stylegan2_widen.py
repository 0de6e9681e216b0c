"""Widening a trained StyleGAN2 network (generation/stylegan2/widen.py) keeps its outputs."""

import pytest
import torch

from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config
from generation.stylegan2.widen import widen


def _perturbed(model):
    """Every parameter moved off its initial value (zero biases and noise strengths included), so a
    copy that drops or misplaces any of them shows in the output."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@pytest.mark.parametrize("changes", [{"channel_base": 1024}, {"channel_base": 2048, "channel_max": 64}])
@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_widened_generator_computes_the_same_images(changes, architecture):
    cfg = StyleGAN2Config(img_resolution=32, z_dim=16, w_dim=16, mapping_layers=2, channel_base=512,
                          channel_max=32, architecture=architecture)
    G = _perturbed(Generator(cfg))
    before = {k: v.clone() for k, v in G.state_dict().items()}
    W = widen(G, **changes)
    assert sum(p.numel() for p in W.parameters()) > sum(p.numel() for p in G.parameters())
    assert W.config.channel_base == changes["channel_base"]
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = G(z, None, noise_mode="const"), W(z, None, noise_mode="const")
    assert a.abs().mean() > 0.05
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())  # the source is untouched


@pytest.mark.parametrize("changes,mbstd", [({"channel_base": 1024}, 1), ({"channel_base": 2048, "channel_max": 64}, 0)])
@pytest.mark.parametrize("architecture", ["resnet", "skip", "orig"])
def test_widened_discriminator_computes_the_same_logits(changes, mbstd, architecture):
    # channel_max 32 -> 64 widens the 4x4 epilogue too (only without minibatch std, which averages over it)
    cfg = DiscriminatorConfig(img_resolution=32, channel_base=512, channel_max=32, architecture=architecture,
                              mbstd_num_channels=mbstd)
    D = _perturbed(Discriminator(cfg))
    W = widen(D, **changes)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = D(x), W(x)
    assert a.std() > 0.01
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_new_channels_differ_and_the_seed_fixes_them():
    G = _perturbed(Generator(StyleGAN2Config(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=1,
                                             channel_base=256, channel_max=16)))
    kw = {"channel_base": 512, "channel_max": 32}
    a, b, c = widen(G, seed=0, **kw), widen(G, seed=0, **kw), widen(G, seed=1, **kw)
    w_a, w_c = a.synthesis.b16.conv1.weight, c.synthesis.b16.conv1.weight
    assert torch.equal(w_a, b.synthesis.b16.conv1.weight)
    old = G.synthesis.b16.conv1.weight.shape[0]
    assert not torch.equal(w_a[old:], w_c[old:])  # new output channels: random, by seed
    assert torch.count_nonzero(w_a[:old, old:]) == 0  # old outputs ignore the new inputs


def test_narrowing_and_other_settings_are_refused():
    G = Generator(StyleGAN2Config(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=256,
                                  channel_max=16))
    with pytest.raises(ValueError, match="narrower"):
        widen(G, channel_base=128)
    with pytest.raises(ValueError, match="changes only channel_base, channel_max"):
        widen(G, w_dim=16)
    D = Discriminator(DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=16))
    with pytest.raises(ValueError, match="minibatch-std feature is a mean over those channels"):
        widen(D, channel_max=32)
