"""Train text-conditioned super-resolution: a GLEAN-style network on a frozen StyleGAN2 latent bank,
its latent codes steered by the caption's HD-VILA text embedding.

    accelerate launch generation/train_sr.py --output_dir runs/sr-demo64-x4 --data demo
    accelerate launch generation/train_sr.py --output_dir runs/sr --data captions.jsonl \\
        --generator my-stylegan2.pkl --hdvila my-hdvila-folder
    accelerate launch --multi_gpu --num_processes 2 generation/train_sr.py ...   # 2 processes (gloo on a CPU)

What is trained: :class:`generation.superres.modeling_sr.SRModel` (encoder, text conditioner,
fusion, decoder) and a discriminator initialised from the generator's ``discriminator/`` folder
(GLEAN, Chan et al. 2021, trains its discriminator beside the network). Each has its own optimiser
and is prepared separately. The generator is the latent bank and stays frozen unless
``--finetune_generator``; the HD-VILA model is frozen and only embeds captions (once, cached) and
scores the output for the text loss.

Data: ``--data demo`` renders ``--train_size`` images of the demo domain's train split with their
captions; any other value is a captions file (HD-VILA images jsonl, or a CSV with image and caption
columns) whose images are centre-cropped and resized to the generator's resolution. The LR input is
made on the fly: antialiased bicubic downsampling (PIL-style), then ``--blur``/``--noise``/``--jpeg``
blind degradations when given. Captions are dropped with probability ``--text_drop``, so one model
also serves users without captions.

Conventions follow diffusers' example scripts (options of :func:`hdvila.training.add_common_args`).
Checkpoints hold both models, both optimisers, the EMA of the SR network (``ema/``) and the RNG
states; batches and per-step randomness are functions of the step, so a resumed run continues as an
uninterrupted one. Validation writes ``OUTPUT_DIR/validation/step-N.png`` (LR | bicubic | SR without
text | SR with text | HR) and logs PSNR. At the end the EMA network is written with its generator and
HD-VILA model as an :class:`~generation.superres.pipeline_sr.SRPipeline` folder in
``OUTPUT_DIR/pipeline``, loadable with ``SRPipeline.from_pretrained`` and ``hdvila upscale --model``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    from runpy import run_path  # the package is not importable yet: its sys.path helper runs by path

    run_path(str(Path(__file__).resolve().parents[1] / "hdvila/training/sys_path.py"))["put_package_first"](__file__)

import argparse
import copy
import logging
from contextlib import nullcontext
from typing import Any, Sequence

import torch

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

logger = logging.getLogger("train_sr")


def _range(text: str) -> tuple[float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) == 1:
        parts = [0.0, parts[0]]
    if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with 0 <= LOW <= HIGH, got {text!r}")
    return parts[0], parts[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from generation.superres.objective import SRLossWeights

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_train_steps=20000, checkpointing_steps=500, validation_steps=500)
    g = p.add_argument_group("models")
    g.add_argument("--generator", default=None, help="StyleGAN2 generator: model folder, NVlabs .pkl or rosinality .pt "
                   "(default: the bundled stylegan2-demo64)")
    g.add_argument("--discriminator", default=None, help="discriminator to start from (default: the generator "
                   "folder's discriminator/, else the pickle's D; 'none': no adversarial or D-feature loss)")
    g.add_argument("--hdvila", default=None, help="HD-VILA model folder (default: the bundled hdvila-mini)")
    g.add_argument("--scale", type=int, choices=[4, 8, 16], default=4,
                   help="upscaling factor (LR = resolution / scale)")
    g.add_argument("--no_text", action="store_true", help="train a model without text conditioning (an ablation)")
    g.add_argument("--encoder_channels", type=at_least(8), default=64)
    g.add_argument("--decoder_channels", type=at_least(8), default=64)
    g.add_argument("--finetune_generator", action="store_true", help="also train the latent bank (lr --lr_generator)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="demo", help="'demo' or a captions file (.jsonl or .csv)")
    g.add_argument("--train_size", type=at_least(1), default=20000, help="demo: training renders")
    g.add_argument("--val_size", type=at_least(1), default=64, help="demo: held-out test-split renders for validation")
    g.add_argument("--text_drop", type=float, default=0.2, help="probability of dropping a caption in training")
    g.add_argument("--blur", type=_range, default=(0.0, 0.0), help="Gaussian blur sigma range LOW,HIGH (LR pixels)")
    g.add_argument("--noise", type=_range, default=(0.0, 0.0), help="Gaussian noise std range on the [-1, 1] scale")
    g.add_argument("--jpeg", type=_range, default=(0.0, 0.0), help="JPEG quality range, e.g. 30,95 (0,0: off)")
    g = p.add_argument_group("optimisation and losses")
    g.add_argument("--train_batch_size", type=at_least(1), default=16, help="images per process per micro-batch")
    g.add_argument("--learning_rate", type=float, default=2e-4, help="Adam lr of the SR network")
    g.add_argument("--lr_discriminator", type=float, default=1e-4)
    g.add_argument("--lr_generator", type=float, default=1e-5, help="with --finetune_generator")
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--ema_decay", type=float, default=0.999)
    w = SRLossWeights()
    for name in ("pixel", "perceptual", "adversarial", "text", "r1_gamma"):
        g.add_argument(f"--{name}_weight" if name != "r1_gamma" else "--r1_gamma", type=float,
                       default=getattr(w, name), dest=f"w_{name}",
                       help=f"weight of the {name} loss (0: off)" if name != "r1_gamma" else "R1 gamma")
    g.add_argument("--pixel_loss", choices=["l1", "mse"], default=w.pixel_kind)
    g.add_argument("--perceptual", choices=["auto", "lpips", "discriminator", "none"], default="auto",
                   help="auto: LPIPS where its AlexNet weights are on disk, else discriminator feature matching")
    g.add_argument("--text_every", type=at_least(1), default=1, help="compute the HD-VILA text loss every N steps")
    g.add_argument("--r1_every", type=at_least(1), default=16,
                   help="lazy R1: apply it every N steps with gamma * N (NVlabs' D_reg_interval)")
    args = p.parse_args(argv)
    if not 0.0 <= args.text_drop <= 1.0:
        p.error(f"--text_drop must be in [0, 1], got {args.text_drop}")
    return args


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """The generator (frozen unless fine-tuned), the discriminator or None, the HD-VILA model and its
    processor (frozen), and the HD-VILA folder."""
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    g_path = resolve_model_path(args.generator, "stylegan2-demo64", option="--generator",
                                accepts="a StyleGAN2 model folder, an NVlabs .pkl or a rosinality .pt")
    G = load_stylegan2(g_path).requires_grad_(bool(args.finetune_generator))
    D = None
    if args.discriminator != "none":
        if args.discriminator:
            D = load_stylegan2(args.discriminator, which="D")
        elif (g_path / "discriminator" / "config.json").is_file():
            D = load_stylegan2(g_path / "discriminator", which="D")
        elif g_path.suffix == ".pkl":
            D = load_stylegan2(g_path, which="D")
        else:
            logger.warning("no discriminator next to %s: training without adversarial and D-feature losses", g_path)
    if D is not None and D.config.img_resolution != G.config.img_resolution:
        from hdvila.errors import CheckpointError

        raise CheckpointError(f"the discriminator is {D.config.img_resolution} px but the generator "
                              f"{G.config.img_resolution} px; pass the generator's own discriminator.")
    h_path = resolve_model_path(args.hdvila, "hdvila-mini", option="--hdvila")
    hdvila = HDVILAModel.from_pretrained(h_path).eval().requires_grad_(False)
    return {"G": G, "D": D, "hdvila": hdvila, "processor": HDVILAProcessor.from_config(hdvila.config),
            "hdvila_dir": h_path}


def load_data(args: argparse.Namespace, models: dict[str, Any], resolution: int):
    """(train, validation) :class:`~generation.superres.data.CaptionedImages` with text embeddings."""
    from generation.superres.data import demo_captioned_images, embed_captions, folder_captioned_images

    if args.data == "demo":
        train = demo_captioned_images(args.train_size, resolution, split="train", seed=args.seed)
        val = demo_captioned_images(args.val_size, resolution, split="test", seed=args.seed)
    else:
        data = folder_captioned_images(args.data, resolution)
        n_val = min(args.val_size, max(1, len(data) // 10))
        train = type(data)(data.images[n_val:], data.captions[n_val:])
        val = type(data)(data.images[:n_val], data.captions[:n_val])
    cache = Path(args.output_dir) / "cache"
    for part in (train, val):
        embed_captions(part, models["hdvila"], models["processor"], model_dir=models["hdvila_dir"], cache_dir=cache)
    return train, val


@torch.no_grad()
def validate(sr_model, G, val, scale: int, out_png: Path) -> dict[str, float]:
    """PSNR (RGB, border 4) of bicubic, SR without text and SR with text on the validation set, and a
    grid PNG of its first 8 images: LR (nearest) | bicubic | SR no text | SR text | HR."""
    from generation.superres.losses import downsample, upsample_bicubic
    from generation.superres.metrics import psnr_unit
    from hdvila.imageio import save_image
    from hdvila.tensors import image_grid

    batch = val.batch(range(len(val)))
    hr, text = batch["hr"], batch["text"]
    lr = downsample(hr, scale)
    outs = {"bicubic": upsample_bicubic(lr, scale).clamp(-1, 1)}
    for name, t in (("no_text", None), ("text", text)):
        outs[name] = torch.cat([sr_model(lr[i:i + 16], G, None if t is None else t[i:i + 16]).float()
                                for i in range(0, len(lr), 16)]).clamp(-1, 1)
    metrics = {f"val/psnr_{k}": float(psnr_unit(v, hr, crop_border=scale).mean()) for k, v in outs.items()}
    k = min(8, len(hr))
    nearest = torch.nn.functional.interpolate(lr[:k], size=hr.shape[-2:], mode="nearest")
    cols = [nearest, outs["bicubic"][:k], outs["no_text"][:k], outs["text"][:k], hr[:k]]
    out_png.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(torch.stack(cols, dim=1).flatten(0, 1), nrow=len(cols)), out_png)
    return metrics


def export(args, accelerator, ema: EMA, models: dict[str, Any]) -> Path:
    """The EMA network with its generator and HD-VILA model as an SRPipeline folder."""
    from generation.superres.pipeline_sr import SRPipeline

    out = Path(args.output_dir) / "pipeline"
    pipe = SRPipeline(sr_model=ema.module, generator=models["G"], hdvila=models["hdvila"],
                      processor=models["processor"])
    pipe.save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from generation.superres.data import hdvila_digest
    from generation.superres.losses import BlindDegradation, make_perceptual
    from generation.superres.modeling_sr import SRModel, config_for_generator
    from generation.superres.objective import SRLossWeights, SRObjective

    args = parse_args(argv)
    precision = resolve_mixed_precision(args.mixed_precision, torch.cuda.is_available())
    accelerator = build_accelerator(args, logger, mixed_precision=precision, cpu=not torch.cuda.is_available())
    models = load_models(args)
    G, D, hdvila = models["G"], models["D"], models["hdvila"]
    torch.manual_seed(args.seed)
    config = config_for_generator(G, scale=args.scale, text_dim=0 if args.no_text else hdvila.config.projection_dim,
                                  encoder_channels=args.encoder_channels, decoder_channels=args.decoder_channels,
                                  text_encoder=hdvila_digest(models["hdvila_dir"]))
    sr_model = SRModel(config)
    train, val = load_data(args, models, config.out_resolution)
    weights = SRLossWeights(pixel=args.w_pixel, pixel_kind=args.pixel_loss, perceptual=args.w_perceptual,
                            adversarial=args.w_adversarial if D is not None else 0.0, text=args.w_text,
                            r1_gamma=args.w_r1_gamma)
    frozen_d = None if D is None else copy.deepcopy(D).requires_grad_(False)  # the perceptual net stays fixed
    perceptual = make_perceptual(args.perceptual, frozen_d) if args.w_perceptual else None
    if not weights.adversarial:
        D = None
    params = [{"params": sr_model.parameters(), "lr": args.learning_rate}]
    if args.finetune_generator:
        params.append({"params": G.synthesis.parameters(), "lr": args.lr_generator})
    opt = torch.optim.Adam(params, betas=(0.9, 0.99))
    sr_model, opt = accelerator.prepare(sr_model, opt)
    opt_d = None
    if D is not None:
        opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_discriminator, betas=(0.0, 0.99))
        D, opt_d = accelerator.prepare(D, opt_d)
    device = accelerator.device
    for module in (G, hdvila, perceptual):
        if module is not None:
            module.to(device)
    ema = EMA(accelerator.unwrap_model(sr_model), args.ema_decay)
    step = 0
    if (resume := resolve_resume(args.output_dir, args.resume_from_checkpoint)) is not None:
        step = load_checkpoint(accelerator, resume)["step"]
        ema.load_from(resume)
    init_trackers(accelerator, "train_sr", args)
    objective = SRObjective(accelerator.unwrap_model(sr_model), G, D=None,
                            perceptual=perceptual, hdvila=hdvila, weights=weights, text_drop=args.text_drop,
                            degradation=BlindDegradation(args.blur, args.noise, args.jpeg))
    objective.sr = sr_model  # the prepared (DDP) module computes the loss, so gradients are synchronised
    d_inner = None if D is None else accelerator.unwrap_model(D)
    sampler = StepBatchSampler(len(train), args.train_batch_size, accumulation=args.gradient_accumulation_steps,
                               rank=accelerator.process_index, world_size=accelerator.num_processes, seed=args.seed,
                               start_step=step)
    stats, budget, result = StepStats(), TimeBudget(args.max_train_minutes), {}
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_train_steps, initial=step, desc="train_sr", disable=not accelerator.is_main_process)
    while step < args.max_train_steps:
        torch.manual_seed(step_seed(args.seed, step, accelerator.process_index))
        gen = torch.Generator().manual_seed(step_seed(args.seed + 1, step, accelerator.process_index))
        objective.w.text = args.w_text if step % args.text_every == 0 else 0.0
        objective.w.r1_gamma = args.w_r1_gamma * args.r1_every if step % args.r1_every == 0 else 0.0
        for micro in range(args.gradient_accumulation_steps):
            batch = {k: v.to(device) for k, v in train.batch(sampler.indices(step, micro)).items()}
            last = micro == args.gradient_accumulation_steps - 1
            sync = accelerator.no_sync(sr_model) if not last and accelerator.num_processes > 1 else nullcontext()
            with sync:
                if d_inner is not None:
                    d_inner.requires_grad_(False)
                objective.D = d_inner  # G phase: D frozen, called unwrapped (no DDP hooks)
                with accelerator.autocast():
                    loss, parts, sr = objective.sr_loss(batch, gen)
                accelerator.backward(loss / args.gradient_accumulation_steps)
            for k, v in parts.items():
                stats.report(k, v)
            if D is not None:
                d_inner.requires_grad_(True)
                d_sync = accelerator.no_sync(D) if not last and accelerator.num_processes > 1 else nullcontext()
                with d_sync:
                    with accelerator.autocast():
                        d_loss, d_parts = objective.d_loss(sr.detach(), batch["hr"], D)
                    accelerator.backward(d_loss / args.gradient_accumulation_steps)
                for k, v in d_parts.items():
                    stats.report(k, v)
        if args.finetune_generator and accelerator.num_processes > 1:
            for p in G.synthesis.parameters():  # the bank is called outside DDP: average its gradients here
                if p.grad is not None:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
        accelerator.clip_grad_norm_(sr_model.parameters(), args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if opt_d is not None:
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        # diffusers' EMA warm-up: the average follows closely at first instead of holding the init
        ema.update(accelerator.unwrap_model(sr_model), decay=min(args.ema_decay, (1 + step) / (10 + step)))
        step += 1
        stop, validation = end_of_step(
            accelerator, args, step, bar=bar, stats=stats, budget=budget, replicas=[sr_model], seen_key="images_seen",
            save_extra=ema.save_to, logger=logger,
            validate=lambda step=step: validate(ema.module, G, val, args.scale,
                                                Path(args.output_dir) / "validation" / f"step-{step:06d}.png"))
        result = validation or result
        if stop:
            break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        result["pipeline"] = str(export(args, accelerator, ema, models))
        logger.info("wrote %s", result["pipeline"])
    accelerator.end_training()
    return {"step": step, **result}


if __name__ == "__main__":
    sys.exit(run_cli(main))
