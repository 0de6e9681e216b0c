"""Text-conditioned SR: the network, its refusals, its data and its losses (tiny configs)."""

import pytest
import torch

from generation.stylegan2.config import StyleGAN2Config
from generation.stylegan2.networks import Generator
from generation.superres.data import read_caption_rows
from generation.superres.losses import BlindDegradation, downsample, text_image_loss
from generation.superres.modeling_sr import SRConfig, SRModel, config_for_generator, generator_fingerprint
from hdvila.errors import CheckpointError, InputFileError


def tiny_generator(seed=0, res=32):
    torch.manual_seed(seed)
    return Generator(StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=res, mapping_layers=1, channel_base=256,
                                     channel_max=32)).eval().requires_grad_(False)


def tiny_sr(G, scale=4, **kw):
    torch.manual_seed(1)
    return SRModel(config_for_generator(G, scale=scale, text_dim=8, encoder_channels=8, decoder_channels=8,
                                        text_hidden=16, **kw))


@pytest.mark.parametrize("scale", [4, 8])
def test_shapes_and_start_as_bicubic(scale):
    G = tiny_generator()
    sr = tiny_sr(G, scale)
    r = 32 // scale
    lr = torch.rand(3, 3, r, r) * 2 - 1
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    out = sr(lr, G, text)
    assert out.shape == (3, 3, 32, 32)
    # the untrained model is near the bicubic upsampling (a small output layer), not at it
    base = torch.nn.functional.interpolate(lr, size=(32, 32), mode="bicubic", align_corners=False)
    assert 0 < (out - base).abs().mean() < 0.05
    # with a zero output layer (to_rgb_init=0) it is exactly the bicubic upsampling
    assert torch.allclose(tiny_sr(G, scale, to_rgb_init=0.0)(lr, G, text), base)
    with pytest.raises(ValueError, match="lr must be"):
        sr(torch.zeros(1, 3, r + 1, r + 1), G)


def test_text_changes_the_output_after_a_step_and_dropout_equals_no_text():
    G = tiny_generator()
    sr = tiny_sr(G)
    for p in sr.parameters():  # move every zero-initialised layer off zero
        torch.nn.init.normal_(p, std=0.05) if p.ndim > 1 else None
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    t = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    with_text, no_text = sr(lr, G, t), sr(lr, G, None)
    assert (with_text - no_text).abs().max() > 1e-4
    dropped = sr(lr, G, t, keep_text=torch.tensor([False, True]))
    assert torch.allclose(dropped[0], no_text[0], atol=1e-6) and torch.allclose(dropped[1], with_text[1], atol=1e-6)


def test_another_generator_is_refused_naming_why(tmp_path):
    G = tiny_generator(0)
    sr = tiny_sr(G)
    sr.check_generator(G)
    with pytest.raises(CheckpointError, match="not the generator"):
        sr.check_generator(tiny_generator(seed=5))  # same shape, other weights
    with pytest.raises(CheckpointError, match="img_resolution 64"):
        sr.check_generator(tiny_generator(res=64))
    sr.save_pretrained(tmp_path / "sr")
    again = SRModel.from_pretrained(tmp_path / "sr")
    assert again.config == sr.config and generator_fingerprint(G)["digest"] == sr.config.generator_digest


def test_config_refuses_bad_scales():
    with pytest.raises(ValueError, match="scale must be one of"):
        SRConfig(scale=3)
    with pytest.raises(ValueError, match="LR side"):
        SRConfig(scale=16, out_resolution=32, bank_channels=[1, 1, 1, 1])


def test_caption_files_name_the_bad_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    good = tmp_path / "caps.csv"
    good.write_text("image;caption\na.png;a red star\nb.png;a blue disc\n")
    rows = read_caption_rows(good)
    assert [c for _, c in rows] == ["a red star", "a blue disc"] and rows[0][0] == tmp_path / "a.png"
    bad = tmp_path / "bad.csv"
    bad.write_text("image,caption\na.png,a red star\nb.png,\n")
    with pytest.raises(InputFileError, match=r"line 3: missing or empty caption for b.png"):
        read_caption_rows(bad)
    jsonl = tmp_path / "caps.jsonl"
    jsonl.write_text('{"image": "a.png", "caption": "x"}\n{"image": "b.png", "caption": "  "}\n')
    with pytest.raises(InputFileError, match="line 2: empty caption"):
        read_caption_rows(jsonl)
    with pytest.raises(InputFileError, match="caption column"):
        (tmp_path / "nocap.csv").write_text("image,label\na.png,1\n")
        read_caption_rows(tmp_path / "nocap.csv")


def test_downsample_and_degradations_and_text_loss():
    hr = torch.rand(2, 3, 16, 16) * 2 - 1
    lr = downsample(hr, 4)
    assert lr.shape == (2, 3, 4, 4) and lr.abs().max() <= 1
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(downsample(flat, 4), torch.full((1, 3, 4, 4), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.zeros(1, 3, 10, 10), 4)
    deg = BlindDegradation(blur=(0.5, 1.5), noise=(0.01, 0.05), jpeg=(30, 90), p=1.0)
    g = torch.Generator().manual_seed(0)
    out = deg(torch.rand(2, 3, 16, 16) * 2 - 1, g)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    assert BlindDegradation()(lr) is lr
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    assert text_image_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert text_image_loss(a, -a, torch.tensor([True, False, False, False])).item() == pytest.approx(2.0)
    assert text_image_loss(a, a, torch.zeros(4, dtype=torch.bool)).item() == 0.0
