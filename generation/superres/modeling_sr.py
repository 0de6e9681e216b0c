"""Text-conditioned super-resolution with a StyleGAN2 latent bank (GLEAN, Chan et al., CVPR 2021,
with an HD-VILA text embedding steering the latent codes).

The network has three parts around a *frozen* StyleGAN2 generator passed in at call time (so the
generator stays its own model folder and a user's NVlabs generator can stand in):

1. **Encoder.** The LR frame ``[N, 3, r, r]`` goes through a conv stem and residual blocks at ``r``,
   then stride-2 convs down to 4x4, keeping a feature map at each resolution. A linear layer on the
   4x4 features gives W+ codes ``[N, num_ws, w_dim]`` as offsets from the generator's ``w_avg``
   (GLEAN's encoder).
2. **Text.** The caption's HD-VILA text embedding ``[N, text_dim]`` (L2-normalised) and the pooled
   encoder features go through an MLP to a second W+ offset: the caption tells the bank what the
   LR frame cannot show (the demo domain's 4-pixel pattern vanishes at 1/4 scale). The same
   embedding modulates the decoder features (FiLM). Without a caption, a learned "no text"
   embedding stands in; training drops captions with a probability so both modes are trained.
3. **Latent bank and decoder.** The generator's synthesis blocks run on those codes; at every
   resolution the encoder also has (4 .. r), the block output is fused with the encoder feature by
   a residual 3x3 conv initialised to zero (at initialisation the bank runs unchanged). A decoder
   climbs from ``r`` to the output resolution, concatenating the bank's feature at each step, and
   predicts a residual over the bicubic upsampling of the LR frame.

Images are float NCHW RGB in [-1, 1]. The model records the generator it was trained with
(:func:`generator_fingerprint`) and refuses another (:meth:`SRModel.check_generator`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from generation.stylegan2.fingerprint import GeneratorBound, generator_fingerprint
from hdvila.modeling_utils import PretrainedModel

SCALES = (4, 8, 16)


@dataclass
class SRConfig:
    model_type: str = "hdvila_text_sr"
    scale: int = 4                      # 4, 8 or 16: LR side = out_resolution // scale
    out_resolution: int = 64            # the generator's resolution
    w_dim: int = 256                    # generator's w width
    num_ws: int = 10                    # generator's number of w vectors
    bank_channels: list[int] = field(default_factory=lambda: [256, 256, 256, 128, 64])  # per block 4..R
    text_dim: int = 256                 # HD-VILA projection_dim; 0: a model without text
    encoder_channels: int = 64          # encoder width at the LR resolution (doubles per halving, max 256)
    encoder_blocks: int = 2             # residual blocks at the LR resolution
    decoder_channels: int = 64          # decoder width at every resolution
    text_hidden: int = 512              # hidden width of the text-to-W+ MLP
    generator_digest: str = ""          # generator_fingerprint(G)["digest"] of the bank it was trained with
    text_encoder: str = ""              # what produced the text embeddings (HD-VILA folder digest)
    to_rgb_init: float = 0.1            # scale of the output layer's default init (0: start exactly at bicubic)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"SRConfig: scale must be one of {SCALES}, got {self.scale}")
        if self.out_resolution < 16 or self.out_resolution & (self.out_resolution - 1):
            raise ValueError(f"SRConfig: out_resolution must be a power of two >= 16, got {self.out_resolution}")
        if self.lr_resolution < 4:
            raise ValueError(f"SRConfig: x{self.scale} from {self.out_resolution} px leaves an LR side of "
                             f"{self.lr_resolution} px (at least 4 needed)")
        if len(self.bank_channels) != int(math.log2(self.out_resolution)) - 1:
            raise ValueError("SRConfig: bank_channels needs one entry per generator block (4 .. out_resolution)")

    @property
    def lr_resolution(self) -> int:
        return self.out_resolution // self.scale


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResBlock(nn.Module):
    """x [N, C, H, W] -> x + conv(lrelu(conv(lrelu(x)))), same shape."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(_lrelu(self.conv0(_lrelu(x))))


class Encoder(nn.Module):
    """LR [N, 3, r, r] in [-1, 1] -> ({res: feature [N, C_res, res, res]} for res = r .. 4,
    pooled [N, C_4], W+ offset [N, num_ws, w_dim])."""

    def __init__(self, config: SRConfig):
        super().__init__()
        r, c = config.lr_resolution, config.encoder_channels
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(c) for _ in range(config.encoder_blocks)])
        self.resolutions = [r // 2 ** i for i in range(int(math.log2(r // 4)) + 1)]  # r, r/2, ..., 4
        self.channels = {r: c}
        self.down = nn.ModuleList()
        for res in self.resolutions[1:]:
            out = min(self.channels[res * 2] * 2, 256)
            self.down.append(nn.Conv2d(self.channels[res * 2], out, 3, stride=2, padding=1))
            self.channels[res] = out
        c4 = self.channels[4]
        self.squeeze = nn.Conv2d(c4, 32, 1)  # keeps the 4x4-to-codes layer small (GLEAN uses a full linear)
        self.to_codes = nn.Linear(32 * 16, config.num_ws * config.w_dim)
        nn.init.zeros_(self.to_codes.bias)
        self.to_codes.weight.data.mul_(0.1)  # start near w_avg: the bank's typical output
        self.num_ws, self.w_dim = config.num_ws, config.w_dim

    def forward(self, lr: torch.Tensor):
        x = self.blocks(_lrelu(self.stem(lr)))
        feats = {self.resolutions[0]: x}
        for res, conv in zip(self.resolutions[1:], self.down):
            x = _lrelu(conv(x))
            feats[res] = x
        codes = self.to_codes(_lrelu(self.squeeze(x)).flatten(1)).view(-1, self.num_ws, self.w_dim)
        return feats, x.mean((2, 3)), codes


class TextConditioner(nn.Module):
    """Text embedding [N, text_dim] (or None rows via ``keep``) and pooled image features [N, C] ->
    (W+ offset [N, num_ws, w_dim], FiLM vector [N, hidden])."""

    def __init__(self, config: SRConfig, pooled_dim: int):
        super().__init__()
        self.null = nn.Parameter(torch.zeros(config.text_dim))  # the "no caption" embedding
        self.mlp = nn.Sequential(nn.Linear(config.text_dim + pooled_dim, config.text_hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(config.text_hidden, config.text_hidden), nn.LeakyReLU(0.2))
        self.to_codes = nn.Linear(config.text_hidden, config.num_ws * config.w_dim)
        nn.init.zeros_(self.to_codes.weight)
        nn.init.zeros_(self.to_codes.bias)
        self.num_ws, self.w_dim = config.num_ws, config.w_dim

    def forward(self, text: torch.Tensor | None, pooled: torch.Tensor, keep: torch.Tensor | None = None):
        n = pooled.shape[0]
        null = self.null.to(pooled.dtype).expand(n, -1)
        if text is None:
            text = null
        elif keep is not None:  # caption dropout: rows with keep=False use the null embedding
            text = torch.where(keep[:, None], text.to(pooled.dtype), null)
        h = self.mlp(torch.cat([text.to(pooled.dtype), pooled], dim=1))
        return self.to_codes(h).view(n, self.num_ws, self.w_dim), h


class SRModel(GeneratorBound, PretrainedModel):
    """The trainable part of text-conditioned SR; the StyleGAN2 generator is passed to ``forward``
    (:meth:`check_generator` refuses any but the one it was trained with)."""

    config_class = SRConfig
    generator_user = "this super-resolution model"
    generator_remedy = ("Use the generator it was trained with, or train one for yours with "
                        "generation/train_sr.py --generator.")

    def __init__(self, config: SRConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        enc_ch = self.encoder.channels
        bank = dict(zip([2 ** i for i in range(2, int(math.log2(config.out_resolution)) + 1)], config.bank_channels))
        self.bank_resolutions = sorted(bank)
        self.text = TextConditioner(config, enc_ch[4]) if config.text_dim else None
        self.fuse = nn.ModuleDict()
        for res in self.encoder.resolutions:
            conv = nn.Conv2d(bank[res] + enc_ch[res], bank[res], 3, padding=1)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            self.fuse[str(res)] = conv
        d, r = config.decoder_channels, config.lr_resolution
        self.dec_in = nn.Conv2d(enc_ch[r] + bank[r], d, 3, padding=1)
        self.dec = nn.ModuleDict({str(res): nn.Conv2d(d + bank[res], d, 3, padding=1)
                                  for res in self.bank_resolutions if res > r})
        self.film = nn.Linear(config.text_hidden, 2 * d) if config.text_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.to_rgb = nn.Conv2d(d + 3, 3, 1)
        # Start near bicubic (a sane output from step 0) but not at it: with a zero output layer the
        # decoder gets no gradient until that layer has grown, which stalls the first hundreds of steps.
        self.to_rgb.weight.data.mul_(config.to_rgb_init)
        nn.init.zeros_(self.to_rgb.bias)

    def generator_requirements(self) -> dict:
        """The generator's resolution, w_dim, num_ws and digest, and its channels per block (the bank)."""
        c = self.config
        return {"resolution": c.out_resolution, "w_dim": c.w_dim, "num_ws": c.num_ws,
                "channels": list(c.bank_channels), "digest": c.generator_digest}

    def forward(self, lr: torch.Tensor, G: nn.Module, text: torch.Tensor | None = None,
                keep_text: torch.Tensor | None = None, return_bank: bool = False):
        """lr [N, 3, r, r] in [-1, 1]; text [N, text_dim] L2-normalised HD-VILA text embeddings or None
        (no caption); ``keep_text`` [N] bool drops captions row-wise (training). Returns SR images
        [N, 3, R, R] in ~[-1, 1] (not clamped); with ``return_bank`` also the bank's own image."""
        c = self.config
        if lr.ndim != 4 or lr.shape[1:] != (3, c.lr_resolution, c.lr_resolution):
            raise ValueError(f"lr must be [N, 3, {c.lr_resolution}, {c.lr_resolution}], got {tuple(lr.shape)}")
        feats, pooled, codes = self.encoder(lr)
        ws = G.mapping.w_avg.to(lr.dtype)[None, None] + codes
        h = None
        if self.text is not None:
            offset, h = self.text(text, pooled, keep_text)
            ws = ws + offset

        def fuse(res: int, x: torch.Tensor) -> torch.Tensor:  # the encoder's features into the bank
            return x + self.fuse[str(res)](torch.cat([x, feats[res]], dim=1)) if str(res) in self.fuse else x

        img, bank = G.render(ws, fused_modconv=False, return_features=True, block_hook=fuse)
        r = c.lr_resolution
        d = _lrelu(self.dec_in(torch.cat([feats[r], bank[r]], dim=1)))
        for res in self.bank_resolutions:
            if res <= r:
                continue
            d = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
            d = _lrelu(self.dec[str(res)](torch.cat([d, bank[res]], dim=1)))
        if self.film is not None:
            gamma, beta = self.film(h).chunk(2, dim=1)
            d = d * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        base = F.interpolate(lr, size=(c.out_resolution, c.out_resolution), mode="bicubic", align_corners=False)
        out = base + self.to_rgb(torch.cat([d, img], dim=1))
        return (out, img) if return_bank else out


def config_for_generator(G: nn.Module, scale: int = 4, text_dim: int = 256, **kwargs) -> SRConfig:
    """An :class:`SRConfig` matching generator ``G`` (resolution, w_dim, num_ws, channels, digest)."""
    fp = generator_fingerprint(G)
    return SRConfig(scale=scale, out_resolution=fp["img_resolution"], w_dim=fp["w_dim"], num_ws=fp["num_ws"],
                    bank_channels=fp["channels"], text_dim=text_dim, generator_digest=fp["digest"], **kwargs)
