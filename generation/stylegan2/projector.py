"""Project an image into a StyleGAN2 generator's latent space by optimisation (W or W+).

:func:`project` follows the design of the optimisation projector users know from StyleGAN2
(re-implemented here): start from the average latent ``w_avg`` (the mean of the mapping of 10,000
random z), optimise the latent with Adam (lr 0.1 with a 5 % linear ramp-up and a cosine ramp-down
over the last 25 % of the steps) while Gaussian noise of scale ``0.05 * w_std * max(0, 1 - t/0.75)^2``
is added to it (``w_std``: the spread of the sampled w, ``t`` in [0, 1] the progress) so that early
steps explore; the generator's per-layer noise maps are optimised too, renormalised to zero mean
and unit variance after every step, and kept white by a penalty on their autocorrelation at every
scale (weight 1e5).

Loss = ``mse_weight`` * pixel MSE + ``perceptual_weight`` * a perceptual term:

- LPIPS (AlexNet, v0.1) when its ImageNet trunk weights exist locally (torchvision's cache,
  ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``; nothing is downloaded), images below
  64 px upsampled to 64 px for it;
- otherwise a multi-scale L1 loss on pixels and on horizontal/vertical image gradients (an image
  pyramid down to 8 px), which keeps edges sharp but is *not* a perceptual metric.

Two optional terms keep what pixel losses average away (both off by default): ``texture_weight``, a
phase-free texture loss (:func:`texture_loss`: the local structure tensor of the fine band, which
tells plain, striped and dotted apart whatever the stripes' phase, where a pixel loss prefers the
plain average to a stripe of the wrong phase), and ``foreground_weight`` F, which counts the pixel
MSE of every pixel unlike the image's border (:func:`foreground_mask`) 1 + F times, so a small object
on a plain background is not traded for the background. :meth:`EditPipeline.invert
<generation.editing.pipeline_edit.EditPipeline.invert>` refines an encoder's latents with the texture
loss (the object weighting is there, off by default).

The result says which loss was used. PSNR is measured on RGB with images mapped from [-1, 1] to
[0, 255] and rounded to 8 bits, i.e. exactly between the saved ``target.png`` and
``reconstruction.png``.

:func:`save_projection` writes ``latent.safetensors`` (``ws`` [1, num_ws, w_dim], the noise maps,
and the settings as metadata), ``reconstruction.png`` and ``target.png``; ``hdvila invert IMAGE
OUT_DIR`` runs both on an image file. ``time_s`` counts the optimisation only: a first build of the
compiled ops (:func:`generation.stylegan2.ops._build.prepare`) happens before the clock starts.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

SPACES = ("w", "w+")
PERCEPTUAL = ("auto", "lpips", "multiscale", "none")
BUNDLED_GENERATOR = "stylegan2-demo64"
LATENT_FILE, RECONSTRUCTION_FILE, TARGET_FILE = "latent.safetensors", "reconstruction.png", "target.png"
PSNR_CONVENTION = "RGB, images in [-1, 1] mapped to [0, 255] and rounded to 8 bits"


@dataclass
class ProjectionResult:
    """What :func:`project` found.

    ws: [1, num_ws, w_dim] float32 on the CPU (for ``space='w'`` the one w repeated num_ws times);
    noise: name of each synthesis layer -> its optimised noise map [res, res] (float32, CPU);
    reconstruction: [1, 3, H, W] float32 in [-1, 1] (clamped), the generator's output for ``ws`` and
    ``noise``; psnr: dB against the target (see :data:`PSNR_CONVENTION`); loss: which loss was
    optimised; time_s: wall time of the optimisation; history: the loss at every step.
    """

    ws: torch.Tensor
    noise: dict[str, torch.Tensor]
    reconstruction: torch.Tensor
    psnr: float
    loss: str
    space: str
    steps: int
    time_s: float
    history: list[float] = field(default_factory=list)

    @property
    def w(self) -> torch.Tensor | None:
        """[1, w_dim]: the single w of a W-space projection (None for W+)."""
        return self.ws[:, 0] if self.space == "w" else None


# ------------------------------------------------------------------------------------------------
# Losses and metrics


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of images x, y [N, 3, H, W] in [-1, 1]: both mapped to [0, 255] and rounded to
    uint8 first (as when saved to PNG); ``inf`` when identical."""
    from hdvila.tensors import unit_to_uint8

    a, b = unit_to_uint8(x).float(), unit_to_uint8(y).float()
    mse = (a - b).square().mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def noise_regularization(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over noise maps [..., H, W] and over scales (halving down to 8 px) of the squared mean
    products of each map with itself shifted by one pixel in x and in y: zero for white noise.
    Leading dimensions (e.g. one map per image of a batch) are kept: returns [...] (a scalar for
    [H, W] maps)."""
    lead = noise_maps[0].shape[:-2]
    total = noise_maps[0].new_zeros(lead)
    for n in noise_maps:
        v = n.reshape(-1, 1, *n.shape[-2:])
        while True:
            sx = (v * v.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            sy = (v * v.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            total = total + (sx + sy).reshape(lead)
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return total


def multiscale_loss(x: torch.Tensor, y: torch.Tensor, min_size: int = 8) -> torch.Tensor:
    """Per-image mean over a pyramid (full size, halved down to ``min_size``) of L1 on pixels plus
    L1 on horizontal and vertical differences. x, y: [N, C, H, W] -> [N]."""
    def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))

    terms = []
    while True:
        terms.append(l1(x, y) + l1(x.diff(dim=3), y.diff(dim=3)) + l1(x.diff(dim=2), y.diff(dim=2)))
        if min(x.shape[2:]) < 2 * min_size:
            break
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.stack(terms).mean(dim=0)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel of x [N, C, H, W] (reflect padding)."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t.square() / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def texture_stats(x: torch.Tensor, band_sigma: float = 1.0, pool_sigma: float = 2.0) -> torch.Tensor:
    """x [N, 3, H, W] in [-1, 1] -> [N, 3, H, W]: the local structure tensor (Jxx, Jyy, Jxy) of the fine
    band (luminance minus its Gaussian blur at ``band_sigma``) pooled by a Gaussian at ``pool_sigma``,
    as amplitudes (square root, signed for Jxy). Pooled over more than the pattern period it does not
    depend on the pattern's phase: ~0 on plain areas, one orientation on stripes, isotropic on dots."""
    y = x.float().mean(dim=1, keepdim=True)
    band = y - _gaussian_blur(y, band_sigma)
    gx = F.pad(band.diff(dim=3), (0, 1, 0, 0))
    gy = F.pad(band.diff(dim=2), (0, 0, 0, 1))
    j = _gaussian_blur(torch.cat([gx.square(), gy.square(), gx * gy], dim=1), pool_sigma)
    eps = 1e-3  # keeps the square root's gradient finite; subtracted so that a plain area reads 0
    diag = (j[:, :2].clamp(min=0) + eps).sqrt() - eps ** 0.5
    off = j[:, 2:].sign() * ((j[:, 2:].abs() + eps).sqrt() - eps ** 0.5)
    return torch.cat([diag, off], dim=1)


def texture_loss(rec: torch.Tensor, x: torch.Tensor | None = None, *, x_stats: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Per-image mean L1 between :func:`texture_stats` of ``rec`` and ``x`` [N, 3, H, W] -> [N]
    (``x_stats``: x's statistics computed once, for a target that does not change)."""
    return (texture_stats(rec) - (texture_stats(x) if x_stats is None else x_stats)).abs().mean(dim=(1, 2, 3))


def foreground_mask(x: torch.Tensor, threshold: float = 0.15) -> torch.Tensor:
    """x [N, 3, H, W] in [-1, 1] -> float mask [N, 1, H, W]: 1 where a pixel differs from the median
    colour of the image's one-pixel border by more than ``threshold`` in some channel (the object on a
    plain background), else 0."""
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)  # [N, 3, 4W]
    background = border.median(dim=2).values[:, :, None, None]
    return ((x - background).abs().amax(dim=1, keepdim=True) > threshold).float()


def pixel_weights(x: torch.Tensor, foreground_weight: float) -> torch.Tensor | float:
    """Per-pixel MSE weights for images x [N, 3, H, W] in [-1, 1]: 1 + ``foreground_weight`` on the
    :func:`foreground_mask` ([N, 1, H, W]), or the scalar 1 when the weight is 0."""
    return 1 + foreground_weight * foreground_mask(x) if foreground_weight else 1


def image_loss(targets: torch.Tensor, device: torch.device, *, mse_weight: float = 1.0, perceptual: str = "auto",
               perceptual_weight: float = 1.0, texture_weight: float = 0.0, foreground_weight: float = 0.0
               ) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The projector's image terms against fixed ``targets`` [N, 3, R, R] (see the module docstring):
    ``(loss, name)`` with ``loss(images)`` -> [N], the targets' mask and texture computed once."""
    perceptual_fn, name = make_perceptual(perceptual, device)
    if texture_weight:
        name += f" + texture x{texture_weight:g}"
    if foreground_weight:
        name += f" (object pixels' MSE x{1 + foreground_weight:g})"
    weights = pixel_weights(targets, foreground_weight)
    target_texture = texture_stats(targets) if texture_weight else None

    def loss(images: torch.Tensor) -> torch.Tensor:
        out = mse_weight * ((images - targets).square() * weights).mean(dim=(1, 2, 3))
        if texture_weight:
            out = out + texture_weight * texture_loss(images, x_stats=target_texture)
        if perceptual_fn is not None and perceptual_weight:
            out = out + perceptual_weight * perceptual_fn(images, targets)
        return out

    return loss, name


def lpips_trunk_path(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet weights LPIPS needs (they are never downloaded here)."""
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    url = {"alex": AlexNet_Weights.IMAGENET1K_V1.url, "vgg": VGG16_Weights.IMAGENET1K_V1.url}[net]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def make_perceptual(kind: str,
                    device: torch.device) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, str]:
    """-> (loss(x, y) on [N, 3, H, W] in [-1, 1] -> per-image [N], or None for 'none'; its description).

    ``auto`` uses LPIPS when the AlexNet trunk weights exist locally, else the multi-scale loss;
    ``lpips`` without the weights is a :class:`~hdvila.errors.UserError`.
    """
    from hdvila.errors import UserError

    if kind not in PERCEPTUAL:
        raise UserError(f"perceptual loss must be one of {', '.join(PERCEPTUAL)}, got {kind!r}")
    if kind == "none":
        return None, "mse only"
    trunk = lpips_trunk_path("alex")
    if kind == "lpips" or (kind == "auto" and trunk.is_file()):
        if not trunk.is_file():
            raise UserError(f"LPIPS needs the AlexNet ImageNet weights at {trunk}, which are not on this machine "
                            f"(they cannot be downloaded here). Copy the file there, or use --perceptual multiscale.")
        import lpips

        model = lpips.LPIPS(net="alex", verbose=False).to(device).eval().requires_grad_(False)

        def lpips_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if x.shape[-1] < 64:  # AlexNet's strides need at least ~64 px
                x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
                y = F.interpolate(y, size=(64, 64), mode="bilinear", align_corners=False)
            return model(x, y).flatten()

        return lpips_loss, "mse + LPIPS (AlexNet)"
    note = "" if kind == "multiscale" else f"; LPIPS unavailable: no AlexNet weights at {trunk}"
    return multiscale_loss, f"mse + multi-scale L1 on pixels and gradients (not perceptual{note})"


# ------------------------------------------------------------------------------------------------
# Noise maps


def noise_layers(G: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(name, layer) of every synthesis layer that adds noise, e.g. ``synthesis.b8.conv0``."""
    return [(name, m) for name, m in G.named_modules() if getattr(m, "use_noise", False) and hasattr(m, "noise_const")]


@contextlib.contextmanager
def noise_override(G: torch.nn.Module, noise: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily use the given noise maps ([res, res] per layer name) in ``noise_mode='const'``."""
    layers = dict(noise_layers(G))
    unknown = sorted(set(noise) - set(layers))
    if unknown:
        raise ValueError(f"noise maps for unknown layers: {unknown}")
    saved = {name: layers[name].noise_const for name in noise}
    try:
        for name, n in noise.items():
            if n.shape != saved[name].shape:
                raise ValueError(f"noise map {name}: shape {tuple(n.shape)}, expected {tuple(saved[name].shape)}")
            layers[name].noise_const = n.to(saved[name].device, saved[name].dtype)
        yield
    finally:
        for name, n in saved.items():
            layers[name].noise_const = n


@torch.no_grad()
def synthesize(G: torch.nn.Module, ws: torch.Tensor, noise: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Images [N, 3, H, W] (float32, unclamped) of ws [N, num_ws, w_dim] with the given noise maps
    (e.g. a :class:`ProjectionResult`'s), or G's stored ones."""
    with noise_override(G, noise or {}):
        return G.render(ws)


@torch.no_grad()
def w_statistics(G: torch.nn.Module, num_samples: int = 10000, seed: int = 0,
                 chunk: int = 2048) -> tuple[torch.Tensor, float]:
    """(w_avg [w_dim], w_std): mean of the mapping of ``num_samples`` z ~ N(0, I) and the root
    mean squared distance of those w from it."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    ws = []
    for i in range(0, num_samples, chunk):
        z = torch.randn([min(chunk, num_samples - i), G.z_dim], generator=gen).to(device)
        ws.append(G.mapping(z, None)[:, 0].float())
    w = torch.cat(ws)
    w_avg = w.mean(dim=0)
    w_std = float((w - w_avg).square().sum(dim=1).mean().sqrt())
    return w_avg, w_std


# ------------------------------------------------------------------------------------------------
# Projection


def lr_ramp(t: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """The projector's learning-rate factor at progress ``t`` in [0, 1): linear warm-up over the first
    ``rampup`` of the steps, cosine ramp-down over the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    return (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / rampup if rampup > 0 else 1.0)


def project(G: torch.nn.Module, target: torch.Tensor, *, seed: int = 0, **kwargs) -> ProjectionResult:
    """Find ws (and noise maps) with which ``G`` reproduces one ``target`` image.

    target: [1, 3, R, R] (or [3, R, R]) float in [-1, 1] with R = G's resolution. The other
    arguments are :func:`project_batch`'s. Returns the image's :class:`ProjectionResult`.
    """
    if target.ndim == 3:
        target = target.unsqueeze(0)
    if target.ndim == 4 and target.shape[0] != 1:
        from hdvila.errors import UserError

        raise UserError(f"project takes one image [1, C, H, W]; use project_batch for {target.shape[0]} images")
    return project_batch(G, target, seeds=[seed], **kwargs)[0]


def _check_projection_inputs(G: torch.nn.Module, targets: torch.Tensor, space: str, steps: int,
                             seeds: list[int] | None, texture_weight: float = 0.0,
                             foreground_weight: float = 0.0) -> list[int]:
    """Refuse :func:`project_batch`'s arguments that cannot work (a :class:`~hdvila.errors.UserError`);
    returns the seeds, one int per image."""
    from hdvila.errors import UserError

    if space not in SPACES:
        raise UserError(f"space must be 'w' or 'w+', got {space!r}")
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    if texture_weight < 0 or foreground_weight < 0:
        raise UserError(f"texture_weight and foreground_weight must be >= 0, got {texture_weight:g} and "
                        f"{foreground_weight:g}")
    res, ch = G.img_resolution, G.img_channels
    if targets.ndim != 4 or tuple(targets.shape[1:]) != (ch, res, res) or targets.shape[0] < 1:
        raise UserError(f"target must be [1, {ch}, {res}, {res}] (or [N, {ch}, {res}, {res}] for a batch) for this "
                        f"generator, got {tuple(targets.shape)}; resize the image to the generator's resolution first.")
    if not torch.isfinite(targets).all():
        raise UserError("target contains NaN or infinity")
    n = targets.shape[0]
    seeds = [0] * n if seeds is None else [int(x) for x in seeds]
    if len(seeds) != n:
        raise UserError(f"{len(seeds)} seeds for {n} images")
    return seeds


def project_batch(G: torch.nn.Module, targets: torch.Tensor, *, space: str = "w+", steps: int = 300, lr: float = 0.1,
                  lr_rampup: float = 0.05, lr_rampdown: float = 0.25, initial_noise_factor: float = 0.05,
                  noise_ramp_length: float = 0.75, noise_reg_weight: float = 1e5, optimize_noise: bool = True,
                  mse_weight: float = 1.0, perceptual: str = "auto", perceptual_weight: float = 1.0,
                  texture_weight: float = 0.0, foreground_weight: float = 0.0, w_avg_samples: int = 10000,
                  seeds: list[int] | None = None, init_ws: torch.Tensor | None = None,
                  stored_noise: bool = False, device: str | torch.device | None = None,
                  progress: bool = False) -> list[ProjectionResult]:
    """Project N images at once: N independent optimisations run as one batch (faster per image).

    G: a StyleGAN2 :class:`~generation.stylegan2.Generator` (not modified: a copy is optimised);
    targets: [N, 3, R, R] float in [-1, 1] with R = G's resolution; space: ``'w'`` (one w for all
    layers) or ``'w+'`` (one w per layer); steps >= 1; seeds: one per image (default all 0), fixing
    that image's initial noise maps and latent noise. Other arguments: see the module docstring.

    The loss is the sum of the images' own losses and Adam's update is elementwise, so each image's
    optimisation is independent of the others: image i with seed s here gives what
    :func:`project` gives for it alone with seed s (up to float rounding). Returns one
    :class:`ProjectionResult` per image (``ws`` [1, num_ws, w_dim], noise maps [res, res]);
    ``time_s`` is the batch's wall time divided by N.

    ``init_ws`` [N, num_ws, w_dim] starts W+ from given latents (e.g. an encoder's: the projector then
    refines), instead of ``w_avg``. ``stored_noise`` keeps the generator's stored noise maps fixed
    (what an encoder's latents were trained with) instead of drawing and optimising new ones.
    """
    from generation.stylegan2.ops._build import prepare as prepare_ops
    from hdvila.device import get_device
    from hdvila.errors import UserError

    seeds = _check_projection_inputs(G, targets, space, steps, seeds, texture_weight, foreground_weight)
    n = targets.shape[0]
    device = get_device(device)
    prepare_ops(device)  # a first build of the compiled ops takes minutes: not part of the timing
    t_start = time.perf_counter()

    G = copy.deepcopy(G).eval().requires_grad_(False).float().to(device)
    targets = targets.to(device, torch.float32)
    w_avg, w_std = w_statistics(G, w_avg_samples)
    image_terms, loss_name = image_loss(targets, device, mse_weight=mse_weight, perceptual=perceptual,
                                        perceptual_weight=perceptual_weight, texture_weight=texture_weight,
                                        foreground_weight=foreground_weight)

    # One random stream per image, so that its result does not depend on the rest of the batch.
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    num_ws = G.num_ws
    if init_ws is not None:
        if space != "w+" or tuple(init_ws.shape) != (n, num_ws, G.w_dim):
            raise UserError(f"init_ws must be [{n}, {num_ws}, {G.w_dim}] with space 'w+', got {tuple(init_ws.shape)}")
        w_opt = init_ws.detach().to(device, torch.float32).clone().requires_grad_(True)
    else:
        w_opt = (w_avg.detach().clone().reshape(1, 1, -1)
                 .repeat(n, num_ws if space == "w+" else 1, 1).requires_grad_(True))
    if stored_noise:
        optimize_noise = False
    layers = [] if stored_noise else noise_layers(G)
    noise = {name: torch.stack([torch.randn(layer.noise_const.shape, generator=g) for g in gens]).to(device)
             for name, layer in layers}  # [N, res, res] per layer
    for name, layer in layers:
        layer.noise_const = noise[name].unsqueeze(1)  # [N, 1, res, res]: broadcast over channels, one per image
        noise[name].requires_grad_(optimize_noise)
    params = [w_opt] + (list(noise.values()) if optimize_noise else [])
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)

    def normalize_noise() -> None:
        with torch.no_grad():
            for m in noise.values():
                m.sub_(m.mean(dim=(1, 2), keepdim=True)).mul_(m.square().mean(dim=(1, 2), keepdim=True).rsqrt())

    def per_image_loss(synth: torch.Tensor) -> torch.Tensor:
        loss = image_terms(synth)
        if optimize_noise and noise_reg_weight:
            loss = loss + noise_reg_weight * noise_regularization(list(noise.values()))
        return loss  # [N]

    normalize_noise()
    history = torch.empty(steps, n)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"projecting {n} image(s) into {space.upper()}", unit="step")
    for step in iterator:
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_ramp(t, lr_rampup, lr_rampdown)

        w_noise = torch.stack([torch.randn(w_opt.shape[1:], generator=g) for g in gens]).to(device) * w_noise_scale
        ws = (w_opt + w_noise).expand(n, num_ws, -1)
        # The shared-weight form of the modulated convolution: faster forward+backward on CPU than the
        # grouped form, also for one image (benchmarks/bench_projector.py times the projector).
        loss = per_image_loss(G.render(ws, fused_modconv=False))
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        if optimize_noise:
            normalize_noise()
        history[step] = loss.detach().cpu()
        if progress:
            iterator.set_postfix(loss=f"{float(history[step].mean()):.4f}", refresh=False)

    with torch.no_grad():
        ws_final = w_opt.detach().expand(n, num_ws, -1).contiguous()
        recon = G.render(ws_final).clamp(-1, 1)
    time_s = (time.perf_counter() - t_start) / n
    clean = targets.clamp(-1, 1)
    return [ProjectionResult(
        ws=ws_final[i:i + 1].cpu(), noise={k: v[i].detach().cpu() for k, v in noise.items()},
        reconstruction=recon[i:i + 1].cpu(), psnr=psnr(recon[i:i + 1], clean[i:i + 1]), loss=loss_name, space=space,
        steps=steps, time_s=time_s, history=history[:, i].tolist()) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# Saving and loading


def save_latent(result: ProjectionResult, path: str | Path, generator: str = "") -> Path:
    """Write ``ws`` [1, num_ws, w_dim], ``w`` [1, w_dim] (W space only) and ``noise.<layer>``
    [res, res] to a safetensors file (atomically), with space/steps/psnr/loss/generator as metadata."""
    from safetensors.torch import save_file

    from hdvila.atomic import atomic_path

    tensors = {"ws": result.ws.clone()}  # clones: safetensors refuses tensors that share memory
    if result.w is not None:
        tensors["w"] = result.w.clone()
    tensors.update({f"noise.{k}": v.clone() for k, v in result.noise.items()})
    meta = {"format": "hdvila-stylegan2-projection", "space": result.space, "steps": str(result.steps),
            "psnr_db": f"{result.psnr:.4f}", "psnr_convention": PSNR_CONVENTION, "loss": result.loss,
            "generator": str(generator)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def save_projection(out_dir: str | Path, result: ProjectionResult, target: torch.Tensor,
                    generator: str = "") -> list[Path]:
    """Write :data:`LATENT_FILE` (:func:`save_latent`), :data:`TARGET_FILE` (``target`` [1, 3, R, R]
    in [-1, 1]) and :data:`RECONSTRUCTION_FILE` into ``out_dir`` (created; each file atomic).
    Returns the three paths."""
    from hdvila.imageio import save_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / LATENT_FILE, out / RECONSTRUCTION_FILE, out / TARGET_FILE]
    save_latent(result, paths[0], generator=generator)
    save_image(result.reconstruction, paths[1])
    save_image(target, paths[2])
    return paths


def load_latent(path: str | Path) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by :func:`save_latent`: (ws [1, num_ws, w_dim], noise maps, metadata)."""
    from safetensors import safe_open

    from hdvila.errors import InputFileError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any failure to read is the same problem for the user
        raise InputFileError(f"{path}: not a readable latent file ({e}).") from None
    if "ws" not in tensors:
        raise InputFileError(f"{path}: has no 'ws' tensor; it was not written by hdvila invert.")
    noise = {k[len("noise."):]: v for k, v in tensors.items() if k.startswith("noise.")}
    return tensors["ws"], noise, meta
