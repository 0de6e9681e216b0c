"""The bundled 64 px demo-domain generator: it loads from its lean (fp16-stored) folder, its samples
read as demo scenes to the judge, and `hdvila invert` uses it when no --generator is given.

The full evidence (1,000 samples, 100 inversions) is `benchmarks/quality/eval_stylegan2_default.py`; these
tests re-check the shipped file on other seeds, with margins, so a damaged or swapped checkpoint fails.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from generation.stylegan2.convert import load_stylegan2
from generation.stylegan2.metrics import generator_samples, real_images
from generation.stylegan2.projector import BUNDLED_GENERATOR, LATENT_FILE, load_latent
from hdvila.demo import DemoImageDataset
from hdvila.demo.attributes import ATTRIBUTES
from hdvila.imageio import save_image
from hdvila.judge import ATTRIBUTE_NAMES, load_judge
from hdvila.judge.evaluate import judge_images, total_variation
from hdvila.paths import bundled

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def G():
    return load_stylegan2(bundled(BUNDLED_GENERATOR)).eval()


def test_bundled_generator_loads_as_float32_64px(G):
    assert G.img_resolution == 64 and G.img_channels == 3
    assert all(p.dtype == torch.float32 for p in G.parameters())
    with torch.no_grad():
        a = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), noise_mode="const")
        b = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0)), noise_mode="const")
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b) and torch.isfinite(a).all()
    assert float((a[0] - a[1]).abs().mean()) > 0.05  # two seeds, two different scenes


def test_bundled_generator_samples_read_as_demo_scenes(G):
    """Bounds from what the shipped file (1,408 kimg, widened to channel_base 4096 at 1,328 kimg)
    measures on these 200 seeds, with margins (docs/results.md has the full evaluation): 60.5%
    confident on every attribute (the 480 kimg file read 1.5%, the 848 kimg one 29%, the 1,136 kimg
    one 46%, the 1,264 kimg one 59%), shape 74%, background 99%, every TV distance <= 0.175; every
    colour appears; and it is far closer to the renders than the same architecture untrained. The 90%
    target is still open."""
    from generation.stylegan2 import Generator
    from generation.stylegan2.metrics import frechet_distance, image_features, load_feature_model

    n = 200
    fake = generator_samples(G, range(5000, 5000 + n))
    real = real_images(n, 64, seed=77)
    judge = load_judge()
    pf, pr = judge_images(judge, fake), judge_images(judge, real)
    confident = torch.stack([pf[k][1] > 0.9 for k in ATTRIBUTE_NAMES])
    assert float(confident.all(0).float().mean()) >= 0.45
    assert float(confident[ATTRIBUTE_NAMES.index("shape")].float().mean()) >= 0.5
    assert float(confident[ATTRIBUTE_NAMES.index("background")].float().mean()) >= 0.9
    assert len(set(pf["color"][0].tolist())) == len(ATTRIBUTES["color"])
    for k in ATTRIBUTE_NAMES:
        assert total_variation(pf[k][0], pr[k][0], len(ATTRIBUTES[k])) <= 0.25, k

    torch.manual_seed(0)
    untrained = Generator(G.config).eval()
    model = load_feature_model()
    real_f = image_features(model, real)
    fd = frechet_distance(image_features(model, fake), real_f)
    fd_untrained = frechet_distance(image_features(model, generator_samples(untrained, range(n))), real_f)
    assert fd * 4 < fd_untrained, (fd, fd_untrained)


def test_bundled_discriminator_tells_renders_from_samples(G):
    """The discriminator shipped beside the generator (discriminator/, what `train_stylegan2.py
    --init_from checkpoints/stylegan2-demo64` goes on with) has the generator's settings and separates:
    on 256 images each it scored fresh renders +0.57 and samples -0.83 on average, 99.6% of samples below 0
    (measured with scripts/d_logits.py at commit 8ec5800); here, on 64 each, +0.50 and -0.80, 98% below 0."""
    from generation.stylegan2 import Discriminator

    D = Discriminator.from_pretrained(bundled(BUNDLED_GENERATOR) / "discriminator").eval()
    assert (D.config.img_resolution, D.config.channel_base, D.config.channel_max) == (
        G.img_resolution, G.config.channel_base, G.config.channel_max)
    n = 64
    with torch.no_grad():
        real = D(real_images(n, 64, seed=78)).flatten()
        fake = D(generator_samples(G, range(6000, 6000 + n))).flatten()
    assert float(real.mean()) > float(fake.mean()) + 0.8, (real.mean(), fake.mean())
    assert float((fake < 0).float().mean()) >= 0.8


def test_invert_cli_defaults_to_bundled_generator(cli, tmp_path):
    image = tmp_path / "render.png"
    save_image(DemoImageDataset("test", 1, resolution=64, seed=31)[0]["image"], image)
    out = tmp_path / "out"
    # The CLI's default 300 steps: 60-step runs land in local minima by chance (19.9 dB for the
    # 1,264 kimg file on this image, 27.4 dB for the 1,136 kimg one). The render's flat mean colour
    # scores 19.4 dB here, so the bound sits well above a trivial reconstruction.
    proc = cli("invert", image, out, "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    psnr = float(proc.stdout.split("PSNR ")[1].split(" dB")[0])
    assert psnr >= 24.0, proc.stdout
    ws, _, meta = load_latent(out / LATENT_FILE)
    assert ws.shape[1:] == (10, 256) and BUNDLED_GENERATOR in meta["generator"]
    assert Image.open(out / "reconstruction.png").size == (64, 64)
