"""StyleGAN2 training pieces for ``generation/train_stylegan2.py``: the module DDP wraps for G, the
run's counters, Adam's lazy-regularisation settings and the validation grid. The loss phases are
:class:`generation.stylegan2.losses.StyleGAN2Loss`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from generation.stylegan2 import losses as L

STATE_FORMAT = 2  # 1: the step was stored as "global_step"
# What the loop reports every step (StepStats names: always part of the cross-process reduction).
STAT_NAMES = ("loss_G", "loss_D_fake", "loss_D_real", "score_real", "score_fake", "sign_real", "r1_penalty",
              "pl_penalty", "pl_length")


class GeneratorForTraining(nn.Module):
    """The module DDP wraps for G: one forward = mapping (+ style mixing) + synthesis.

    forward(z [N, z_dim]) -> (images [N, C, R, R] in ~[-1, 1], ws [N, num_ws, w_dim] float32).
    The mapping network runs outside autocast so ws (the path-length regulariser differentiates
    with respect to them) stay float32.
    """

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, style_mixing_prob: float = 0.0, update_w_avg: bool = False,
                noise_mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
        G = self.generator
        with torch.autocast(device_type=z.device.type, enabled=False):
            ws = G.mapping(z.float(), None, update_emas=update_w_avg)
            if style_mixing_prob > 0 and ws.shape[1] > 1 and float(torch.rand(())) < style_mixing_prob:
                cutoff = int(torch.randint(1, ws.shape[1], ()))
                ws2 = G.mapping(torch.randn_like(z, dtype=torch.float32), None)
                ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return G.synthesis(ws, noise_mode=noise_mode), ws


@dataclass
class TrainState:
    """Counters saved in every checkpoint (``training_state.json``) beside Accelerate's state."""

    step: int = 0
    cur_nimg: int = 0
    pl_mean: float = 0.0
    g_frozen_until: int = 0  # --d_warmup_steps: G is not updated before this step
    ema_rampup: bool = True  # off for a run started from model folders (no image count to ramp over)
    ada: dict | None = None
    model: dict = field(default_factory=dict)  # the run's MODEL_KEYS settings, checked on resume
    format: int = STATE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_counters(self, saved: dict[str, Any]) -> None:
        """Take the counters of a checkpoint's training state (``load_training_state``); the model
        settings stay this run's."""
        self.step, self.cur_nimg, self.pl_mean = saved["step"], saved["cur_nimg"], saved["pl_mean"]
        self.g_frozen_until, self.ema_rampup = saved.get("g_frozen_until", 0), saved.get("ema_rampup", True)
        self.ada = saved.get("ada")


def adam_settings(lr: float, interval: int, betas: tuple[float, float], eps: float) -> dict[str, Any]:
    """Adam's hyperparameters for a network regularised every ``interval`` steps: ``lr * c`` and
    ``betas ** c`` with ``c = interval / (interval + 1)`` (NVlabs' lazy-regularisation correction)."""
    c = L.lazy_regularization_ratio(interval)
    return {"lr": lr * c, "betas": (betas[0] ** c, betas[1] ** c), "eps": eps}


@torch.no_grad()
def sample_grid(G_ema: nn.Module, z: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Images of G_ema for the fixed z [N, z_dim] (truncation 1, constant noise) as one grid
    [3, H', W'] in [-1, 1]."""
    from hdvila.tensors import image_grid

    was_training = G_ema.training
    G_ema.eval()
    imgs = torch.cat([G_ema(z[i:i + batch], noise_mode="const", truncation_psi=1.0).float().cpu()
                      for i in range(0, len(z), batch)])
    G_ema.train(was_training)
    return image_grid(imgs.clamp(-1, 1))


__all__ = ["GeneratorForTraining", "STAT_NAMES", "TrainState", "adam_settings", "sample_grid"]
