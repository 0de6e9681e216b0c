"""Bottleneck ResNet in the torchvision/mmdetection layout (the key names of ``hdvila_stage2.pt``).

Stride sits on the 3x3 convolution ("pytorch" style). With ``norm_eval`` the BatchNorm layers stay in
eval mode during training (statistics frozen, affine parameters still trainable), as the released
model was trained.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, *, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, optional 3x3/2 max-pool) and ``num_stages`` Bottleneck stages.

    Stage ``i`` (1-based) has ``4 * width * 2**(i-1)`` output channels; stages 2-4 halve the resolution.
    """

    def __init__(self, *, layers: tuple[int, ...],   # blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50
                 width: int = 64,                      # stem channels = bottleneck width of stage 1
                 stem_pool: bool = True,               # max-pool after the stem
                 num_stages: int = 4,                  # stages to build (the LR branch may stop at 3)
                 norm_eval: bool = True) -> None:      # BatchNorm statistics frozen in train mode
        super().__init__()
        self.norm_eval = norm_eval
        self.num_stages = num_stages
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem_pool else nn.Identity()
        in_channels = width
        for i in range(num_stages):
            w = width * 2 ** i
            blocks = [Bottleneck(in_channels=in_channels, width=w, stride=1 if i == 0 else 2)]
            in_channels = w * Bottleneck.expansion
            blocks += [Bottleneck(in_channels=in_channels, width=w) for _ in range(1, layers[i])]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)  # each residual block starts as the identity

    def forward(self, x: torch.Tensor, last_stage: int | None = None) -> list[torch.Tensor]:
        """[N, 3, H, W] normalised pixels -> outputs of stages 1..``last_stage`` (default: all built).

        Stage ``i`` output: [N, 4*width*2**(i-1), H/s, W/s] with s the stage's total stride.
        """
        last_stage = self.num_stages if last_stage is None else last_stage
        if not 1 <= last_stage <= self.num_stages:
            raise ValueError(f"last_stage must be in 1..{self.num_stages}, got {last_stage}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(1, last_stage + 1):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
