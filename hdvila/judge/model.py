"""Attribute judge: a small CNN with one softmax head per demo-domain attribute."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hdvila.demo.attributes import ATTRIBUTES
from hdvila.modeling_utils import PretrainedModel
from hdvila.paths import bundled

ATTRIBUTE_NAMES = tuple(ATTRIBUTES)  # shape, color, background, size, pattern


@dataclass
class JudgeConfig:
    model_type: str = "attribute_judge"
    resolution: int = 64                                   # input side; other sizes are resized to it
    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 128])  # channels per scale (full, 1/2, 1/4, 1/8)
    num_classes: dict[str, int] = field(default_factory=lambda: {k: len(v) for k, v in ATTRIBUTES.items()})


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeJudge(PretrainedModel):
    """Reads shape, colour, background, size and pattern off an RGB image.

    Two convolutions at full resolution (the 4-pixel surface patterns are only visible there), then
    one stride-2 stage per further width, global average + max pooling, and a linear head per attribute.
    """

    config_class = JudgeConfig

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        w = config.widths
        layers = [_conv(3, w[0]), _conv(w[0], w[0])]
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [_conv(cin, cout, stride=2), _conv(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({k: nn.Linear(2 * w[-1], n) for k, n in config.num_classes.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: [N, 3, H, W] in [-1, 1] -> logits per attribute, each [N, num_classes]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        r = self.config.resolution
        if images.shape[-2:] != (r, r):
            images = F.interpolate(images, size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        h = self.features(images)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return {k: head(pooled) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """images [N, 3, H, W] in [-1, 1] -> {attribute: (class index [N], confidence [N] in [0, 1])}."""
        out = {}
        for k, logits in self.forward(images).items():
            conf, idx = logits.float().softmax(-1).max(-1)
            out[k] = (idx, conf)
        return out


def load_judge(path: str | Path | None = None, device: str | torch.device = "cpu") -> AttributeJudge:
    """Load the judge from ``path`` (default: the bundled ``checkpoints/judge``), in eval mode."""
    return AttributeJudge.from_pretrained(path or bundled("judge")).to(device).eval()
