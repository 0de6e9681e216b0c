"""Train a pSp/e4e-style encoder from images to a frozen StyleGAN2 generator's W+ latents.

    accelerate launch generation/train_encoder.py --output_dir runs/encoder-demo64 --data demo
    accelerate launch generation/train_encoder.py --output_dir runs/enc --data my_frames/ \\
        --generator my-stylegan2.pkl --hdvila my-hdvila-folder
    accelerate launch --multi_gpu --num_processes 2 generation/train_encoder.py ...   # 2 processes (gloo on a CPU)

What is trained: :class:`generation.editing.encoder.LatentEncoder`. The generator and the HD-VILA
model are frozen; gradients flow through the generator into the latents.

Each batch mixes real images (``--data demo``: ``--train_size`` renders of the demo domain's train
split; otherwise a folder of images, centre-cropped and resized to the generator's resolution) with
``--synthetic_fraction`` generator samples, whose true W+ latents are known. The loss is

- pixel MSE and the multi-scale L1 on pixels and gradients between the image and its reconstruction
  (``--pixel_weight``, ``--multiscale_weight``); with ``--foreground_weight F`` the pixel MSE of each
  pixel unlike the image's border (:func:`foreground_mask`) counts 1 + F times, so a small object on a
  plain background is not traded for the background (off by default: for images with plain backgrounds);
- perceptual loss (``--perceptual_weight``, off by default): LPIPS where its weights are on disk, else
  feature matching on the generator's frozen StyleGAN2 discriminator (``--discriminator``; pix2pixHD's
  discriminator feature loss), whose features know the domain's edges and textures that pixel losses
  blur (:func:`generation.superres.losses.make_perceptual`);
- HD-VILA feature loss, 1 - cos of their image embeddings (``--hdvila_weight``, every
  ``--hdvila_every`` steps): the reconstruction keeps what the guide of editing reads;
- phase-free texture loss (``--texture_weight``, off by default): L1 between the local structure
  tensors of the fine band of image and reconstruction (:func:`texture_stats`). The demo's stripes and
  dots modulate the colour by +-45 around its plain value, so pixel losses are satisfied by the plain
  average (a stripe of the wrong phase costs twice what no stripe does); the structure tensor, pooled
  over more than a period, tells plain (no energy), striped (one orientation) and dotted (isotropic)
  apart whatever the phase, and also carries the orientation of the object's edges;
- on the generator samples, MSE between the predicted and the true latents (``--latent_weight``, off by
  default: most of a 256-d w does not show in a demo image, so the regression target is ill-posed);
- on the generator samples, generator-feature matching (``--feature_weight``, off by default): the
  synthesis network's block outputs (``--feature_resolutions``, 4 .. R px) for the predicted latents
  against those for the true latents, each normalised by the target's variance
  (:func:`feature_matching_loss`). This supervises the latents in the space that decides the image
  (the 4-16 px blocks fix shape and layout, 32-64 px the pattern) rather than in w, where most
  directions do not show, and it gives the shape a direct target that the pixel losses, whose
  gradient only sees a blob's few edge pixels, do not;
- e4e's delta regulariser on every latent (``--delta_weight``): W+ vectors close to their mean.

Conventions follow diffusers' example scripts (options of :func:`hdvila.training.add_common_args`);
checkpoints hold the encoder, its optimiser, its EMA (``ema/``) and the RNG states, and batches and
per-step randomness are functions of the step, so a resumed run continues as an uninterrupted one.
Validation writes ``OUTPUT_DIR/validation/step-N.png`` (image | reconstruction pairs of held-out
test-split renders) and logs their PSNR, the object's PSNR, the object-mask IoU (``val/iou``: the
shape) and the texture distance inside the object (``val/texture``: the pattern), all judge-free
(:func:`shape_and_pattern_metrics`). At the end the EMA encoder is written to ``OUTPUT_DIR/encoder``,
the component ``EditPipeline`` loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    from runpy import run_path  # the package is not importable yet: its sys.path helper runs by path

    run_path(str(Path(__file__).resolve().parents[1] / "hdvila/training/sys_path.py"))["put_package_first"](__file__)

import argparse
import logging
from typing import Any, Sequence

import torch

from generation.stylegan2.projector import foreground_mask, pixel_weights, texture_loss, texture_stats
from hdvila.training import (
    EMA,
    StepBatchSampler,
    StepStats,
    TimeBudget,
    add_common_args,
    at_least,
    build_accelerator,
    end_of_step,
    init_trackers,
    load_checkpoint,
    resolve_mixed_precision,
    resolve_resume,
    run_cli,
    step_seed,
)

logger = logging.getLogger("train_encoder")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_train_steps=20000, checkpointing_steps=500, validation_steps=500)
    g = p.add_argument_group("models")
    g.add_argument("--generator", default=None, help="StyleGAN2 generator: model folder, NVlabs .pkl or rosinality .pt "
                   "(default: the bundled stylegan2-demo64)")
    g.add_argument("--hdvila", default=None, help="HD-VILA model folder for the feature loss (default: the bundled "
                   "hdvila-mini)")
    g.add_argument("--discriminator", default=None, help="StyleGAN2 discriminator for --perceptual_weight (default: "
                   "the generator folder's discriminator/, or the pickle's D)")
    g.add_argument("--channels", type=at_least(8), default=32, help="encoder width at the input resolution")
    g.add_argument("--latent_space", choices=["z+", "w+"], default="z+", help="encoder head (see LatentEncoder)")
    g.add_argument("--init_encoder", default=None, help="start from this encoder model folder (e.g. a bundled one; "
                   "fresh optimiser) instead of a random initialisation")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="demo", help="'demo' or a folder of images (recursive)")
    g.add_argument("--train_size", type=at_least(1), default=20000, help="demo: training renders")
    g.add_argument("--val_size", type=at_least(1), default=64,
                   help="held-out images for validation (demo: test split)")
    g.add_argument("--synthetic_fraction", type=float, default=0.5,
                   help="share of each batch that is generator samples")
    g.add_argument("--truncation", type=float, default=1.0, help="truncation psi of the generator samples")
    g = p.add_argument_group("optimisation and losses")
    g.add_argument("--train_batch_size", type=at_least(2), default=16, help="images per process per micro-batch")
    g.add_argument("--learning_rate", type=float, default=5e-4)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--pixel_weight", type=float, default=1.0)
    g.add_argument("--multiscale_weight", type=float, default=1.0)
    g.add_argument("--foreground_weight", type=float, default=0.0,
                   help="extra pixel-loss weight on pixels unlike the image border "
                   "(0: off; e.g. 10 for the demo domain)")
    g.add_argument("--perceptual_weight", type=float, default=0.0,
                   help="perceptual loss weight (LPIPS if on disk, else discriminator features; 0: off)")
    g.add_argument("--perceptual", choices=["auto", "lpips", "discriminator"], default="auto",
                   help="which perceptual loss --perceptual_weight uses")
    g.add_argument("--hdvila_weight", type=float, default=0.5)
    g.add_argument("--hdvila_every", type=at_least(1), default=2)
    g.add_argument("--latent_weight", type=float, default=0.0,
                   help="MSE to the true latents of generator samples (ill-posed: most of w is invisible in the image)")
    g.add_argument("--delta_weight", type=float, default=0.002)
    g.add_argument("--texture_weight", type=float, default=0.0,
                   help="phase-free texture loss (local structure tensors of the fine band; 0: off)")
    g.add_argument("--feature_weight", type=float, default=0.0,
                   help="generator-feature matching on generator samples (needs --synthetic_fraction > 0; 0: off)")
    g.add_argument("--feature_resolutions", type=int, nargs="+", default=None,
                   help="synthesis blocks for --feature_weight (default: every block, 4 .. R px)")
    args = p.parse_args(argv)
    if args.feature_weight and not args.synthetic_fraction:
        p.error("--feature_weight needs generator samples (--synthetic_fraction > 0)")
    if not 0.0 <= args.synthetic_fraction < 1.0:
        p.error(f"--synthetic_fraction must be in [0, 1), got {args.synthetic_fraction}")
    return args


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """The frozen generator, the frozen HD-VILA guide, the perceptual loss (None unless
    ``--perceptual_weight``), and the generator's folder."""
    from generation.editing.guide import HDVILAGuide
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    g_path = resolve_model_path(args.generator, "stylegan2-demo64", option="--generator",
                                accepts="a StyleGAN2 model folder, an NVlabs .pkl or a rosinality .pt")
    G = load_stylegan2(g_path).eval().requires_grad_(False).float()
    h_path = resolve_model_path(args.hdvila, "hdvila-mini", option="--hdvila")
    hdvila = HDVILAModel.from_pretrained(h_path)
    perceptual = None
    if args.perceptual_weight:
        from generation.superres.losses import make_perceptual

        D = None
        if args.perceptual != "lpips":
            d_path = args.discriminator or (Path(g_path) / "discriminator" if Path(g_path).is_dir() else g_path)
            D = load_stylegan2(d_path, which="D").eval().requires_grad_(False).float()
        perceptual = make_perceptual(args.perceptual, D)
    return {"G": G, "guide": HDVILAGuide(hdvila, HDVILAProcessor.from_config(hdvila.config)), "g_path": g_path,
            "perceptual": perceptual}


def load_images(args: argparse.Namespace, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) uint8 [N, 3, R, R]."""
    from generation.data import render_demo_images, scan_image_folder

    cache = Path(args.output_dir) / "cache"
    if args.data == "demo":
        train = render_demo_images(args.train_size, resolution, split="train", seed=args.seed, progress=True,
                                   cache_file=cache / f"train-{args.train_size}-{resolution}px-seed{args.seed}.npy")
        val = render_demo_images(args.val_size, resolution, split="test", seed=args.seed)
        return torch.from_numpy(train), torch.from_numpy(val)
    _, pixels = scan_image_folder(args.data, resolution, progress=True)
    pixels = torch.from_numpy(pixels)
    n_val = min(args.val_size, max(1, len(pixels) // 10))
    return pixels[n_val:], pixels[:n_val]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def reconstruct(G, ws: torch.Tensor, return_features: bool = False):
    """G's image [N, 3, R, R] (unclamped) of ws, with its stored noise maps; with ``return_features``,
    ``(image, {resolution: synthesis block output})``."""
    return G.render(ws, fused_modconv=False, return_features=return_features)


def feature_matching_loss(pred: dict[int, torch.Tensor], target: dict[int, torch.Tensor],
                          resolutions: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over the synthesis blocks ``resolutions`` (default: all in ``target``) of the MSE between
    block outputs ``pred[r]`` and ``target[r]`` [N, C, r, r], each divided by the target's variance
    (so every block counts alike whatever its scale) -> [N]."""
    res = sorted(target) if resolutions is None else list(resolutions)
    terms = []
    for r in res:
        t = target[r].float()
        terms.append((pred[r].float() - t).square().mean(dim=(1, 2, 3)) / t.var().clamp(min=1e-8))
    return torch.stack(terms).mean(dim=0)


@torch.no_grad()
def validate(encoder, G, val: torch.Tensor, out_png: Path, perceptual=None) -> dict[str, float]:
    """PSNR (RGB, 8-bit) of the reconstructions of the validation images, the same over the pixels of
    :func:`foreground_mask` only (``val/psnr_fg``: the object, what editing needs kept), the perceptual
    distance (``val/perceptual``, when a perceptual loss is given) and a grid PNG of 8 pairs."""
    from generation.stylegan2.projector import psnr
    from hdvila.imageio import save_image
    from hdvila.tensors import image_grid, unit_to_uint8

    x = to_unit(val)
    rec = torch.cat([reconstruct(G, encoder(x[i:i + 32], G)).float() for i in range(0, len(x), 32)])
    rec = rec.clamp(-1, 1)
    k = min(8, len(x))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(torch.stack([x[:k], rec[:k]], dim=1).flatten(0, 1), nrow=4), out_png)
    per = [psnr(rec[i:i + 1], x[i:i + 1]) for i in range(len(x))]
    mask = foreground_mask(x)
    diff = unit_to_uint8(rec).float() - unit_to_uint8(x).float()  # 8-bit levels, as psnr() measures
    mse_fg = (diff.square() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3))).clamp(min=1)
    fg = (10 * torch.log10(255.0 ** 2 / mse_fg.clamp(min=1e-10))).mean().item()
    out = {"val/psnr": sum(per) / len(per), "val/psnr_fg": fg, **shape_and_pattern_metrics(x, rec)}
    if perceptual is not None:
        out["val/perceptual"] = sum(perceptual(rec[i:i + 32], x[i:i + 32]).item() * len(x[i:i + 32])
                                    for i in range(0, len(x), 32)) / len(x)
    return out


def shape_and_pattern_metrics(x: torch.Tensor, rec: torch.Tensor) -> dict[str, float]:
    """Judge-free measures of what pixel PSNR hides, for images x and their reconstructions rec
    [N, 3, H, W] in [-1, 1]: ``val/iou``, the mean IoU of the object masks (pixels unlike x's border,
    in both images measured against x's border colour: the shape, position and size), and
    ``val/texture``, the mean :func:`texture_stats` L1 distance over the inside of x's object (its
    mask eroded by 2 px, so the edges do not count: the pattern, whatever its phase)."""
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
    background = border.median(dim=2).values[:, :, None, None]
    m_x = ((x - background).abs().amax(dim=1, keepdim=True) > 0.15).float()
    m_r = ((rec - background).abs().amax(dim=1, keepdim=True) > 0.15).float()
    inter, union = (m_x * m_r).sum(dim=(1, 2, 3)), ((m_x + m_r) > 0).float().sum(dim=(1, 2, 3))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    inside = -torch.nn.functional.max_pool2d(-m_x, 5, stride=1, padding=2)
    dist = (texture_stats(rec) - texture_stats(x)).abs().mean(dim=1, keepdim=True)
    tex = (dist * inside).sum(dim=(1, 2, 3)) / inside.sum(dim=(1, 2, 3)).clamp(min=1)
    return {"val/iou": iou.mean().item(), "val/texture": tex.mean().item()}


def sample_synthetic(G, n: int, truncation: float, generator: torch.Generator, return_features: bool = False):
    """n generator samples: (images [n, 3, R, R] clamped to [-1, 1], their ws [n, num_ws, w_dim]), and
    with ``return_features`` the synthesis block outputs as a third item (:func:`reconstruct`)."""
    z = torch.randn([n, G.z_dim], generator=generator).to(G.mapping.w_avg.device)
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=truncation)
        if return_features:
            img, feats = reconstruct(G, ws, return_features=True)
            return img.clamp(-1, 1), ws, feats
        return reconstruct(G, ws).clamp(-1, 1), ws


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from generation.editing.encoder import LatentEncoder, config_for_generator, delta_regularizer
    from generation.editing.guide import cosine_loss
    from generation.stylegan2.projector import multiscale_loss

    args = parse_args(argv)
    precision = resolve_mixed_precision(args.mixed_precision, torch.cuda.is_available())
    accelerator = build_accelerator(args, logger, mixed_precision=precision, cpu=not torch.cuda.is_available())
    models = load_models(args)
    G, guide, perceptual = models["G"], models["guide"], models["perceptual"]
    torch.manual_seed(args.seed)
    if args.init_encoder:
        encoder = LatentEncoder.from_pretrained(args.init_encoder).float()
        encoder.check_generator(G, source=f"--generator for --init_encoder {args.init_encoder}")
    else:
        encoder = LatentEncoder(config_for_generator(G, channels=args.channels, latent_space=args.latent_space,
                                                     trained_on=f"{args.data}"))
    if args.feature_resolutions and not set(args.feature_resolutions) <= set(G.synthesis.block_resolutions):
        from hdvila.errors import UserError

        raise UserError(f"--feature_resolutions {args.feature_resolutions}: the generator's synthesis blocks are "
                        f"{G.synthesis.block_resolutions}")
    train, val = load_images(args, G.img_resolution)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.learning_rate, betas=(0.9, 0.99))
    encoder, opt = accelerator.prepare(encoder, opt)
    device = accelerator.device
    G.to(device)
    guide.to(device)
    if perceptual is not None:
        perceptual.to(device)
    ema = EMA(accelerator.unwrap_model(encoder), args.ema_decay)
    step = 0
    if (resume := resolve_resume(args.output_dir, args.resume_from_checkpoint)) is not None:
        step = load_checkpoint(accelerator, resume)["step"]
        ema.load_from(resume)
    init_trackers(accelerator, "train_encoder", args)
    n_syn = int(round(args.train_batch_size * args.synthetic_fraction))
    n_real = args.train_batch_size - n_syn
    sampler = StepBatchSampler(len(train), n_real, accumulation=args.gradient_accumulation_steps,
                               rank=accelerator.process_index, world_size=accelerator.num_processes, seed=args.seed,
                               start_step=step)
    stats, budget, result = StepStats(), TimeBudget(args.max_train_minutes), {}
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_train_steps, initial=step, desc="train_encoder", disable=not accelerator.is_main_process)
    while step < args.max_train_steps:
        torch.manual_seed(step_seed(args.seed, step, accelerator.process_index))
        gen = torch.Generator().manual_seed(step_seed(args.seed + 1, step, accelerator.process_index))
        use_hdvila = args.hdvila_weight > 0 and step % args.hdvila_every == 0
        for micro in range(args.gradient_accumulation_steps):
            real = to_unit(train[sampler.indices(step, micro)]).to(device)
            syn, syn_ws, syn_feats = real[:0], None, None
            if n_syn and args.feature_weight:
                syn, syn_ws, syn_feats = sample_synthetic(G, n_syn, args.truncation, gen, return_features=True)
            elif n_syn:
                syn, syn_ws = sample_synthetic(G, n_syn, args.truncation, gen)
            x = torch.cat([real, syn])
            with accelerator.autocast():
                ws = encoder(x, G)
                rec, feats = reconstruct(G, ws, return_features=True)
                rec = rec.float()
                weight = pixel_weights(x, args.foreground_weight)
                parts = {"pixel": ((rec - x).square() * weight).mean(), "multiscale": multiscale_loss(rec, x).mean(),
                         "delta": delta_regularizer(ws.float()).mean()}
                if syn_ws is not None:
                    parts["latent"] = (ws[n_real:].float() - syn_ws).square().mean()
                if syn_feats is not None:
                    parts["feature"] = feature_matching_loss({r: f[n_real:] for r, f in feats.items()}, syn_feats,
                                                             args.feature_resolutions).mean()
                if args.texture_weight:
                    parts["texture"] = texture_loss(rec, x).mean()
                if perceptual is not None:
                    parts["perceptual"] = perceptual(rec, x)
                if use_hdvila:
                    parts["hdvila"] = cosine_loss(guide.image_features(rec), guide.image_features(x).detach()).mean()
            weights = {"pixel": args.pixel_weight, "multiscale": args.multiscale_weight, "delta": args.delta_weight,
                       "latent": args.latent_weight, "hdvila": args.hdvila_weight,
                       "perceptual": args.perceptual_weight, "feature": args.feature_weight,
                       "texture": args.texture_weight}
            loss = sum(weights[k] * v for k, v in parts.items())
            accelerator.backward(loss / args.gradient_accumulation_steps)
            stats.report("loss", loss.detach())
            for k, v in parts.items():
                stats.report(k, v.detach())
        accelerator.clip_grad_norm_(encoder.parameters(), args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(encoder), decay=min(args.ema_decay, (1 + step) / (10 + step)))
        step += 1
        stop, validation = end_of_step(
            accelerator, args, step, bar=bar, stats=stats, budget=budget, replicas=[encoder], seen_key="images_seen",
            save_extra=ema.save_to, logger=logger,
            validate=lambda step=step: validate(ema.module, G, val,
                                                Path(args.output_dir) / "validation" / f"step-{step:06d}.png",
                                                perceptual))
        result = validation or result
        if stop:
            break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.output_dir) / "encoder"
        ema.module.save_pretrained(out)
        result["encoder"] = str(out)
        logger.info("wrote %s", out)
    accelerator.end_training()
    return {"step": step, **result}


if __name__ == "__main__":
    sys.exit(run_cli(main))
