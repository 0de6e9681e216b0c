"""A learned encoder from an image to a StyleGAN2 generator's W+ latents, in one forward pass.

The design follows pSp (Richardson et al., CVPR 2021) and e4e (Tov et al., SIGGRAPH 2021):

- a conv pyramid (a stem at the image resolution, then a residual block and a stride-2 conv per
  level, down to 4x4; width ``channels`` at the top, doubling per halving up to 256);
- a *base* latent from the 4x4 features (e4e's single w), plus one *offset* per W+ vector read
  from the pyramid level that matches the generator layer it drives: coarse vectors (4-8 px
  layers) from the 4x4 features, medium (16 px) from 8x8, fine (32 px and above) from 16x16
  (pSp's map2style heads, here a 1x1 squeeze and a linear layer on the 4x4-pooled map);
- ``latent_space="z+"`` (default): each vector is ``mapping(base + offset_i)``, the generator's own
  (frozen) mapping network applied per W+ vector, so every predicted vector lies on the W manifold
  the generator was trained on. Regressing W+ directly (``"w+"``: ``ws = w_avg + base + offset_i``)
  leaves the manifold, where a small step changes the image violently; on the bundled generator
  the Z+ head reaches 17 dB after 50 steps where the W+ head is at 11 (``docs/results.md``). e4e's
  delta regulariser (:func:`delta_regularizer`) keeps the W+ vectors close to each other so that the
  latent stays editable.

Images are float NCHW RGB in [-1, 1] at the generator's resolution (:attr:`EncoderConfig.resolution`);
the encoder records the generator it was trained with and refuses another (:meth:`check_generator`).
Trained by ``generation/train_encoder.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from generation.stylegan2.fingerprint import GeneratorBound
from hdvila.modeling_utils import PretrainedModel


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def ws_resolutions(num_ws: int, resolution: int) -> list[int]:
    """The synthesis resolution each of a StyleGAN2 generator's ``num_ws`` W+ vectors drives: vector
    0 the 4x4 block, 1-2 the 8x8 block, 3-4 16x16, ... (NVlabs' w indexing: each block takes its
    convs' vectors and shares the last one with its toRGB)."""
    return [min(4 * 2 ** math.ceil(i / 2), resolution) for i in range(num_ws)]


def ws_groups(num_ws: int, resolution: int) -> dict[str, list[int]]:
    """W+ indices per StyleGAN group: ``coarse`` (layers at 4-8 px), ``medium`` (16-32 px at 64 px
    and above; 16 px for smaller generators) and ``fine`` (the rest). At 1024 px this is the usual
    coarse 4-8 / medium 16-32 / fine 64-1024 split."""
    res = ws_resolutions(num_ws, resolution)
    out = {"coarse": [i for i, r in enumerate(res) if r <= 8],
           "medium": [i for i, r in enumerate(res) if 8 < r <= max(16, min(32, resolution // 2))],
           "fine": []}
    taken = set(out["coarse"]) | set(out["medium"])
    out["fine"] = [i for i in range(num_ws) if i not in taken]
    return out


@dataclass
class EncoderConfig:
    model_type: str = "stylegan2_latent_encoder"
    resolution: int = 64            # the generator's resolution (input side)
    w_dim: int = 256
    num_ws: int = 10
    channels: int = 32              # width at the input resolution (doubles per halving, max 256)
    head_channels: int = 32         # 1x1 squeeze before each W+ head
    latent_space: str = "z+"        # "z+": heads give z vectors mapped by G.mapping; "w+": W+ offsets from w_avg
    generator_digest: str = ""      # generation.stylegan2.fingerprint digest of the generator
    trained_on: str = ""            # free text: what the training data was
    # Inversion PSNR (dB) below which an image is reported as outside what the generator draws: the
    # 1st percentile over in-domain images (generation.editing.domain.calibrate); None: no check.
    in_domain_psnr_db: float | None = None

    def __post_init__(self) -> None:
        if self.resolution < 16 or self.resolution & (self.resolution - 1):
            raise ValueError(f"EncoderConfig: resolution must be a power of two >= 16, got {self.resolution}")
        if self.latent_space not in ("z+", "w+"):
            raise ValueError(f"EncoderConfig: latent_space must be 'z+' or 'w+', got {self.latent_space!r}")


class _Level(nn.Module):
    """[N, cin, r, r] -> residual block -> stride-2 conv -> [N, cout, r/2, r/2]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.down = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv1(_lrelu(self.conv0(_lrelu(x))))
        return _lrelu(self.down(x))


class LatentEncoder(GeneratorBound, PretrainedModel):
    """Image [N, 3, R, R] in [-1, 1] -> W+ latents [N, num_ws, w_dim] of the generator it was trained for
    (:meth:`check_generator` refuses another)."""

    config_class = EncoderConfig
    generator_user = "this latent encoder"
    generator_remedy = ("Use the generator it was trained with, or train an encoder for yours with "
                        "generation/train_encoder.py --generator.")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        r, c = config.resolution, config.channels
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.levels = nn.ModuleList()
        self.channels = {r: c}
        while r > 4:
            out = min(self.channels[r] * 2, 256)
            self.levels.append(_Level(self.channels[r], out))
            r //= 2
            self.channels[r] = out
        self.source = [{4: 4, 8: 4, 16: 8}.get(res, 16) for res in ws_resolutions(config.num_ws, config.resolution)]
        h = config.head_channels
        self.squeeze = nn.ModuleDict({str(s): nn.Conv2d(self.channels[s], h, 1) for s in sorted(set(self.source))})
        self.heads = nn.ModuleList([nn.Linear(h * 16, config.w_dim) for _ in range(config.num_ws)])
        self.base = nn.Sequential(nn.Linear(self.channels[4] * 16, 512), nn.LeakyReLU(0.2),
                                  nn.Linear(512, config.w_dim))
        for m in self.modules():  # He init for leaky ReLU: PyTorch's default lets the signal fade by 4x4
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0.2)
                nn.init.zeros_(m.bias)
        for level in self.levels:
            level.conv1.weight.data.mul_(0.5)  # residual branch: keep the block's variance near its input's
        for layer in [*self.heads, self.base[-1]]:
            layer.weight.data.mul_(0.1)  # start near w_avg: the generator's typical output
            nn.init.zeros_(layer.bias)

    def forward(self, images: torch.Tensor, G: nn.Module) -> torch.Tensor:
        """images [N, 3, R, R] in [-1, 1]; G the generator (its mapping network and ``w_avg`` are used,
        not trained) -> ws [N, num_ws, w_dim]."""
        c = self.config
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, c.resolution, c.resolution):
            raise ValueError(f"images must be [N, 3, {c.resolution}, {c.resolution}], got {tuple(images.shape)}")
        x = _lrelu(self.stem(images))
        feats, r = {c.resolution: x}, c.resolution
        for level in self.levels:
            x = level(x)
            r //= 2
            feats[r] = x
        base = self.base(feats[4].flatten(1))
        pooled = {s: F.adaptive_avg_pool2d(_lrelu(self.squeeze[str(s)](feats[s])), 4).flatten(1)
                  for s in set(self.source)}
        offsets = torch.stack([head(pooled[s]) for head, s in zip(self.heads, self.source)], dim=1)
        if c.latent_space == "w+":
            return G.mapping.w_avg.to(offsets.dtype)[None, None] + base[:, None] + offsets
        z = (base[:, None] + offsets).flatten(0, 1)
        return G.mapping(z, None)[:, 0].reshape(images.shape[0], c.num_ws, c.w_dim)


def delta_regularizer(ws: torch.Tensor) -> torch.Tensor:
    """e4e's delta regulariser: the mean squared distance of each W+ vector from the latent's mean
    vector. ws [N, num_ws, w_dim] -> [N]."""
    return (ws - ws.mean(dim=1, keepdim=True)).square().sum(-1).mean(-1)


def config_for_generator(G: nn.Module, **kwargs) -> EncoderConfig:
    """An :class:`EncoderConfig` for generator ``G`` (resolution, w_dim, num_ws, digest)."""
    from generation.stylegan2.fingerprint import generator_fingerprint

    fp = generator_fingerprint(G)
    return EncoderConfig(resolution=fp["img_resolution"], w_dim=fp["w_dim"], num_ws=fp["num_ws"],
                         generator_digest=fp["digest"], **kwargs)
