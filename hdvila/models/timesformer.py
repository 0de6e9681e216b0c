"""The hybrid video transformer: TimeSformer blocks with divided space-time attention over a grid of
CNN features (no patch embedding, no class token). Key names follow ``hdvila_stage2.pt``.

Each block applies temporal attention (each grid cell attends across frames, its output passed
through ``temporal_fc``), then spatial attention (each frame attends across cells), then an MLP, each
with a residual connection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability ``p`` in training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    """Multi-head self-attention over [N, L, C] with a fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Divided space-time block on tokens [N, T, S, C] (T frames, S = rows*cols grid cells)."""

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, s, c = x.shape
        xt = x.transpose(1, 2).reshape(n * s, t, c)  # each cell's sequence over time
        res_t = self.drop_path(self.temporal_attn(self.temporal_norm1(xt)))
        x = x + self.temporal_fc(res_t.view(n, s, t, c).transpose(1, 2))
        xs = x.reshape(n * t, s, c)  # each frame's sequence over cells
        x = x + self.drop_path(self.attn(self.norm1(xs))).view(n, t, s, c)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(nn.Module):
    """Learned space (``pos_embed`` [1, rows*cols, C]) and time (``time_embed`` [1, num_frames, C])
    embeddings, then ``depth`` divided space-time blocks. ``norm`` is kept for checkpoint
    compatibility; the released model never applies it."""

    def __init__(self, *, dim: int, depth: int, num_heads: int, grid_size: tuple[int, int], num_frames: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.1) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size[0] * grid_size[1], dim))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path=r)
                                    for r in rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.time_embed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Later blocks' temporal branches start closed, so the encoder starts near the per-frame features.
        for block in list(self.blocks)[1:]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, C, rows, cols] feature grids -> [N, T, C, rows, cols].

        Embeddings are interpolated when the grid (bilinear) or the clip length (linear) differs from
        the sizes they were built for.
        """
        n, t, c, h, w = x.shape
        x = x.flatten(3).transpose(2, 3)  # [N, T, S, C]
        pos = self.pos_embed
        if (h, w) != self.grid_size:
            pos = pos.transpose(1, 2).reshape(1, c, *self.grid_size)
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        time = self.time_embed
        if t != time.shape[1]:
            time = F.interpolate(time.transpose(1, 2), size=t, mode="linear", align_corners=False).transpose(1, 2)
        x = x + pos.unsqueeze(1) + time.unsqueeze(2)
        for block in self.blocks:
            x = block(x)
        return x.transpose(2, 3).reshape(n, t, c, h, w)
