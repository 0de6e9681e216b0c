"""Judge-free sample-quality metric for choosing checkpoints and training settings.

The attribute judge (:mod:`hdvila.judge`) is the referee of the demo-domain results and must not
steer training. Choices made while training (which run, which checkpoint, which R1 weight) use this
instead: the Fréchet distance between generated and real images in the image-embedding space of the
bundled HD-VILA model (``FD-HDVILA``, the FID recipe with HD-VILA's image tower in place of
Inception, which cannot be downloaded here). Lower is better; real-vs-real sets of the same size
give the noise floor.

    hdvila fd runs/a/checkpoint-4750/generator_ema runs/b/checkpoint-4750/generator_ema
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

REAL_SEED = 4242


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` [N, D] and ``b`` [M, D]:
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``, in float64."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    ea, va = torch.linalg.eigh(ca)
    sqrt_a = (va * ea.clamp_min(0).sqrt()) @ va.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * cross)


@torch.no_grad()
def image_features(model, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """HD-VILA image embeddings [N, D] of ``images`` [N, 3, H, W] in [-1, 1]."""
    return torch.cat([model.get_image_features(images[i: i + batch].clamp(-1, 1), unit_range=True)
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def generator_samples(G, seeds: Sequence[int], batch: int = 100, psi: float = 1.0) -> torch.Tensor:
    """[len(seeds), 3, R, R] in [-1, 1] on G's device, constant noise; seed ``s`` gives
    ``z = randn(z_dim, generator=manual_seed(s))``, so a sample does not depend on its batch."""
    seeds = list(seeds)
    device = next(G.parameters()).device
    out = []
    for start in range(0, len(seeds), batch):
        z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s))
                         for s in seeds[start: start + batch]]).to(device)
        out.append(G(z, truncation_psi=psi, noise_mode="const").clamp(-1, 1))
    return torch.cat(out)


def real_images(n: int, resolution: int, seed: int = REAL_SEED) -> torch.Tensor:
    """[n, 3, R, R] in [-1, 1]: demo-domain training renders (a stream the generator never saw)."""
    from hdvila.demo.dataset import DemoImageDataset

    data = DemoImageDataset("train", n, resolution=resolution, seed=seed)
    return torch.stack([data[i]["image"] for i in range(n)])


def load_feature_model(path: str | Path | None = None):
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path

    return HDVILAModel.from_pretrained(resolve_model_path(path, "hdvila-mini", option="--fd_model")).eval()


class FDTracker:
    """FD-HDVILA of a generator against a fixed set of real images, for tracking during training.

    dataset: items are float [3, R, R] in [-1, 1]; ``n`` of them, evenly spaced, are embedded once.
    Calling the tracker with a generator embeds ``n`` samples from fixed seeds 0..n-1 (so successive
    measurements differ only by the generator) and returns the distance.
    """

    def __init__(self, dataset, n: int, model_dir: str | Path | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = load_feature_model(model_dir).to(self.device)
        self.n = n
        idx = torch.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().long().unique().tolist()
        real = torch.stack([dataset[i] for i in idx]).to(self.device)
        self.real = image_features(self.model, real)

    @torch.no_grad()
    def __call__(self, G) -> float:
        fake = generator_samples(G, range(self.n)).to(self.device)  # G may sit on another device
        return frechet_distance(image_features(self.model, fake).cpu(), self.real.cpu())
