"""An exponential moving average of a model's weights, kept as a module copy.

``ema = decay * ema + (1 - decay) * weights`` after every optimiser step: the averaged weights
usually sample or evaluate better than the last ones (Polyak averaging; the StyleGAN papers sample
from such a copy, diffusers' ``EMAModel`` does the same for diffusion models). The copy is a whole
module (:attr:`EMA.module`), so it can be called, saved with ``save_pretrained`` or evaluated as it
is; :meth:`EMA.store` / :meth:`EMA.copy_to` / :meth:`EMA.restore` swap its weights into the
training model and back instead (validation with the training model's own code path).

In a checkpoint the copy is a model folder: :data:`EMA_FOLDER` (:meth:`EMA.save_to` /
:meth:`EMA.load_from`), or :data:`GENERATOR_EMA_FOLDER` for ``generation/train_stylegan2.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

#: The checkpoint subfolder holding the EMA copy (``save_pretrained``) in ``train_encoder.py``,
#: ``train_sr.py`` and ``train_mapper.py``.
EMA_FOLDER = "ema"
#: ``train_stylegan2.py``'s name for it (the EMA generator), which its checkpoints, ``--init_from`` and
#: ``hdvila export`` read: kept so that existing runs resume.
GENERATOR_EMA_FOLDER = "generator_ema"


class EMA:
    """Moving average of ``model``'s parameters; buffers (BatchNorm statistics, StyleGAN2's ``w_avg``)
    are copied as they are at each update unless ``copy_buffers`` is False.

    ``decay`` is the default weight of the old average (a float in [0, 1]); :meth:`update` takes a
    per-step value instead when the decay follows a schedule (StyleGAN2's half-life in images with a
    ramp-up: :func:`generation.stylegan2.losses.ema_beta`).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, copy_buffers: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.copy_buffers = decay, copy_buffers
        self.num_updates = 0
        self._stored: list[torch.Tensor] | None = None

    def to(self, *args: Any, **kwargs: Any) -> "EMA":
        """Move the averaged copy (``nn.Module.to`` arguments); returns self."""
        self.module.to(*args, **kwargs)
        return self

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        return list(model.parameters()) + (list(model.buffers()) if self.copy_buffers else [])

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> float:
        """Move the average towards ``model``'s current weights (same structure as the copy);
        returns the decay used. ``decay`` 0 copies the weights."""
        beta = self.decay if decay is None else decay
        for p_ema, p in zip(self.module.parameters(), model.parameters()):
            p_ema.copy_(p.detach().to(p_ema.dtype).lerp(p_ema, beta))
        if self.copy_buffers:
            for b_ema, b in zip(self.module.buffers(), model.buffers()):
                b_ema.copy_(b.detach())
        self.num_updates += 1
        return beta

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        """Keep a copy of ``model``'s weights, to put back with :meth:`restore`."""
        self._stored = [t.detach().clone() for t in self._tensors(model)]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s weights with the averaged ones (call :meth:`store` first to keep them)."""
        for t, t_ema in zip(self._tensors(model), self._tensors(self.module)):
            t.copy_(t_ema.to(t.dtype))

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Put back the weights saved by :meth:`store`."""
        if self._stored is None:
            raise RuntimeError("EMA.restore without a preceding EMA.store")
        for t, saved in zip(self._tensors(model), self._stored):
            t.copy_(saved)
        self._stored = None

    def save_to(self, checkpoint: str | Path, folder: str = EMA_FOLDER) -> None:
        """Write the averaged copy into checkpoint folder ``checkpoint`` as the model folder
        ``checkpoint/folder`` (``save_pretrained``; e.g. ``save_checkpoint(..., extra=ema.save_to)``)."""
        self.module.save_pretrained(Path(checkpoint) / folder)

    def load_from(self, checkpoint: str | Path, folder: str = EMA_FOLDER) -> None:
        """Load the averaged weights that :meth:`save_to` wrote into ``checkpoint``."""
        self.module.load_state_dict(type(self.module).from_pretrained(Path(checkpoint) / folder).state_dict())

    def state_dict(self) -> dict[str, Any]:
        """``{"module": the averaged weights, "decay", "num_updates"}``."""
        return {"module": self.module.state_dict(), "decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
