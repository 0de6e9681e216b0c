"""Text-guided latent optimisation: the StyleCLIP recipe (Patashnik et al., ICCV 2021, section 4) with
HD-VILA in the place of CLIP.

Starting from a source latent ``w_s`` (an inversion, W+ or W), minimise per image

    guide_weight * (1 - cos(HD-VILA(G(w)), text)) + l2_weight * ||w - w_s||^2
    + pixel_weight * MSE(G(w), G(w_s)) + multiscale_weight * multiscale_L1(G(w), G(w_s))
    + identity_weight * identity(G(w), G(w_s))

with Adam (lr 0.1, 300 steps; the learning rate warms up over the first 5 % of the steps and
ramps down on a cosine over the last 25 %, as the projector does). ``||.||^2`` is the sum of squares
over the latent, as in StyleCLIP (weight 0.008). ``identity`` is any callable a user supplies
(e.g. a face-recognition distance), [N] per image. With ``source_text`` the guide term is the
directional loss instead (edit - source image embedding against text - source text embedding).

The N images of a batch are optimised independently: the loss is a sum of per-image losses and
Adam's update is elementwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class OptimizationResult:
    """ws [N, num_ws, w_dim] (float32, CPU); images [N, 3, R, R] in [-1, 1]; history: mean loss per step."""

    ws: torch.Tensor
    images: torch.Tensor
    history: list[float] = field(default_factory=list)


def optimize_edit(G, guide, ws: torch.Tensor, text: torch.Tensor, *, space: str = "w+", steps: int = 300,
                  lr: float = 0.1, lr_rampup: float = 0.05, lr_rampdown: float = 0.25, guide_weight: float = 1.0,
                  l2_weight: float = 0.008, pixel_weight: float = 0.0, multiscale_weight: float = 0.0,
                  identity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  identity_weight: float = 0.0, source_text: torch.Tensor | None = None,
                  guide_views: int = 0, progress: bool = False) -> OptimizationResult:
    """Edit latents ``ws`` [N, num_ws, w_dim] towards text embeddings ``text`` [N, D] (or [1, D]).

    ``space='w'`` optimises one w per image (the mean of its W+ vectors) broadcast to every layer.
    ``guide_views`` > 0 scores the mean embedding of that many random views of each image
    (:meth:`~generation.editing.guide.HDVILAGuide.augmented_image_features`), not the image alone.
    G and the guide are not modified. See the module docstring for the loss.
    """
    from generation.editing.guide import cosine_loss, directional_loss
    from generation.stylegan2.projector import lr_ramp, multiscale_loss
    from hdvila.errors import UserError

    if space not in ("w", "w+"):
        raise UserError(f"space must be 'w' or 'w+', got {space!r}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    device = G.mapping.w_avg.device
    ws = ws.detach().to(device, torch.float32)
    n, num_ws, _ = ws.shape
    text = text.to(device).float().expand(n, -1)
    src = ws.mean(dim=1, keepdim=True) if space == "w" else ws
    w_opt = src.clone().requires_grad_(True)
    opt = torch.optim.Adam([w_opt], lr=lr, betas=(0.9, 0.999))
    G.requires_grad_(False)

    def render(w: torch.Tensor) -> torch.Tensor:
        return G.render(w.expand(n, num_ws, -1), fused_modconv=False)

    with torch.no_grad():
        source_img = render(src).clamp(-1, 1)
        source_emb = guide.image_features(source_img) if source_text is not None else None
    history = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"optimising {n} edit(s)", unit="step")
    for step in iterator:
        for group in opt.param_groups:
            group["lr"] = lr * lr_ramp(step / steps, lr_rampup, lr_rampdown)
        img = render(w_opt)
        emb = guide.augmented_image_features(img, guide_views)
        if source_text is None:
            g = cosine_loss(emb, text)
        else:
            g = directional_loss(emb, source_emb, text, source_text.to(device).float().expand(n, -1))
        loss = guide_weight * g + l2_weight * (w_opt - src).square().sum(dim=(1, 2))
        if pixel_weight:
            loss = loss + pixel_weight * (img - source_img).square().mean(dim=(1, 2, 3))
        if multiscale_weight:
            loss = loss + multiscale_weight * multiscale_loss(img, source_img)
        if identity is not None and identity_weight:
            loss = loss + identity_weight * identity(img, source_img)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        history.append(float(loss.detach().mean()))
    with torch.no_grad():
        final = w_opt.detach().expand(n, num_ws, -1).contiguous()
        return OptimizationResult(ws=final.cpu(), images=render(final).clamp(-1, 1).cpu(), history=history)
