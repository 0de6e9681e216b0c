"""Editing a video clip with one edit for the whole clip, so that it does not flicker.

:func:`edit_clip`: invert every frame (encoder, optional projector refinement), smooth the latents
over time with a Gaussian of ``temporal_sigma`` frames (inversion jitter is what flickers), compute
*one* edit offset for the clip: the mapper at the clip's mean latent with the clip's HD-VILA
embedding (the full hybrid encoder: :meth:`~generation.editing.guide.HDVILAGuide.clip_features`) as
the source, or one optimisation of the mean latent, and add it to every frame's latent.

:func:`edit_frames_independently` is the baseline: each frame edited on its own.
:func:`temporal_change` measures the mean absolute frame-to-frame change of a clip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def edit_clip(pipe, frames: torch.Tensor, prompt: str, *, method: str = "mapper", strength: float = 1.0,
              steps: int = 300, refine_steps: int = 0, temporal_sigma: float = 1.0) -> dict:
    """frames [T, 3, H, W] in [-1, 1] (any size: the pipeline's input policy applies to each) -> dict
    with ``frames`` [T, 3, R, R] (the edit), ``reconstructions``, ``latents`` [T, num_ws, w_dim],
    ``inversion_psnr`` (mean over frames), ``notes`` (what the input policy did, each distinct note
    once, without its frame label; and whether the clip is outside what the generator draws, by its mean
    inversion PSNR) and ``prompt_notes`` (:meth:`EditPipeline.prompt_notes
    <generation.editing.pipeline_edit.EditPipeline.prompt_notes>`). Notes are returned, never warned."""
    pipe.check_inputs(len(frames), prompt, method, strength, steps, refine_steps, False)
    text = pipe.encode_prompt(prompt, 1)
    prompt_notes = pipe.prompt_notes(prompt)
    x, notes = pipe.prepare_images(list(frames), [f"frame {i}" for i in range(len(frames))])
    ws, psnrs, _ = pipe.invert(x, refine_steps)
    ws = smooth_over_time(ws, temporal_sigma)
    mean = ws.mean(dim=0, keepdim=True)
    with torch.no_grad():
        source = pipe.guide.clip_features(pipe.synthesize(ws))
    edited_mean = pipe.edit_latents(mean, text, method, strength, steps, source_embeds=source)
    edited = ws + (edited_mean - mean)
    notes = sorted(set(n.split(": ", 1)[-1] for n in notes if n))
    psnr = sum(psnrs) / len(psnrs)
    notes += [n for n in pipe.domain_notes([psnr], ["the clip"]) if n]  # on the mean over frames
    return {"frames": pipe.synthesize(edited).cpu(), "reconstructions": pipe.synthesize(ws).cpu(),
            "latents": edited.cpu(), "inversion_psnr": psnr, "notes": notes, "prompt_notes": prompt_notes}


def edit_frames_independently(pipe, frames: torch.Tensor, prompt: str, *, method: str = "mapper",
                              strength: float = 1.0, steps: int = 300) -> torch.Tensor:
    """The baseline: every frame inverted and edited on its own -> [T, 3, R, R]."""
    out = pipe(list(frames), prompt, method=method, strength=strength, steps=steps, output_type="pt")
    return out.images
