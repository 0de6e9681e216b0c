"""Helpers of clip editing: one edit for a whole video clip, so that it does not flicker.

The entry is :meth:`EditPipeline.edit_clip <generation.editing.pipeline_edit.EditPipeline.edit_clip>`:
it inverts every frame, smooths the latents over time (:func:`smooth_over_time`: inversion jitter is
what flickers), computes *one* edit offset for the clip and adds it to every frame's latent.

:func:`edit_frames_independently` is the baseline: each frame edited on its own.
:func:`temporal_change` measures the mean absolute frame-to-frame change of a clip.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from generation.editing.pipeline_edit import EditPipeline


#: The largest ``temporal_sigma`` (frames) a clip edit takes: wider kernels only average a clip away.
MAX_TEMPORAL_SIGMA = 50.0


def check_temporal_sigma(sigma) -> None:
    """A one-line :class:`~hdvila.errors.UserError` unless ``sigma`` is a number from 0 to
    :data:`MAX_TEMPORAL_SIGMA` (the latent smoothing of :func:`smooth_over_time`, in frames)."""
    from numbers import Real

    from hdvila.errors import UserError

    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not 0 <= sigma <= MAX_TEMPORAL_SIGMA:
        raise UserError(f"temporal sigma must be a number from 0 (no smoothing) to {MAX_TEMPORAL_SIGMA:g} frames, "
                        f"got {sigma!r}.")


def smooth_over_time(ws: torch.Tensor, sigma: float) -> torch.Tensor:
    """ws [T, num_ws, w_dim] -> the same, Gaussian-filtered along T (edges replicated); sigma 0: unchanged."""
    if sigma <= 0 or ws.shape[0] < 2:
        return ws
    radius = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(ws)
    x = ws.permute(1, 2, 0).reshape(-1, 1, ws.shape[0])       # [num_ws * w_dim, 1, T]
    x = F.pad(x, (radius, radius), mode="replicate")
    return F.conv1d(x, k.view(1, 1, -1)).reshape(ws.shape[1], ws.shape[2], -1).permute(2, 0, 1).contiguous()


def temporal_change(frames: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring frames [T, 3, H, W] in [-1, 1], on the 0-255 scale."""
    if frames.shape[0] < 2:
        return 0.0
    return float((frames[1:] - frames[:-1]).abs().mean() * 127.5)


def edit_frames_independently(pipe: EditPipeline, frames: torch.Tensor, prompt: str, *, method: str = "mapper",
                              strength: float = 1.0, steps: int = 300, refine_steps: int = 0,
                              refine_texture: float | None = None):
    """The baseline of :meth:`~generation.editing.pipeline_edit.EditPipeline.edit_clip`: frames
    [T, 3, H, W] in [-1, 1], every frame inverted (encoder, and ``refine_steps`` projector steps with
    texture-loss weight ``refine_texture``, None: the pipeline's default) and
    edited on its own by ``pipe`` -> its :class:`~generation.editing.pipeline_edit.EditPipelineOutput`
    (``images`` and ``reconstructions`` [T, 3, R, R] in [-1, 1], CPU float32)."""
    return pipe(list(frames), prompt, method=method, strength=strength, steps=steps, refine_steps=refine_steps,
                refine_texture=refine_texture, output_type="pt")
