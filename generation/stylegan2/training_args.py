"""The StyleGAN2-specific options of ``generation/train_stylegan2.py``: model, optimisation,
regularisation, augmentation and initialisation (the shared ones come from
:func:`hdvila.training.add_common_args`).

Defaults follow NVlabs StyleGAN2-ADA (Karras et al. 2020): Adam betas (0, 0.99), lazy R1 every 16
steps, path length every 4 steps with weight 2 on half the batch, style mixing 0.9, an EMA half-life
of ``global batch * 10 / 32`` thousand images with a ramp-up of 0.05.
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence


def add_training_args(p: argparse.ArgumentParser) -> Callable[[argparse.ArgumentParser, argparse.Namespace,
                                                                 Sequence[str]], None]:
    """Add the groups to ``p``; returns ``check(parser, args, argv)``, which validates the parsed
    values (``parser.error`` on a bad one) and sets ``args.augment_ops``."""
    g = p.add_argument_group("model")
    g.add_argument("--resolution", type=int, default=64, help="image side in pixels (power of two, >= 8).")
    g.add_argument("--z_dim", type=int, default=512)
    g.add_argument("--w_dim", type=int, default=512)
    g.add_argument("--mapping_layers", type=int, default=8)
    g.add_argument("--channel_base", type=int, default=16384,
                   help="channels at resolution r: min(channel_base // r, channel_max) (NVlabs convention).")
    g.add_argument("--channel_max", type=int, default=512)
    g.add_argument("--mbstd_group_size", type=int, default=4, help="minibatch-std group size of D.")
    g.add_argument("--num_fp16_res", type=int, default=0,
                   help="run the N highest-resolution blocks of G and D in fp16 (CUDA only; NVlabs uses 4 "
                        "with --conv_clamp 256).")
    g.add_argument("--conv_clamp", type=float, default=None, help="clamp conv outputs to +-X (NVlabs: 256 with fp16).")

    g = p.add_argument_group("optimisation and regularisation")
    g.add_argument("--train_batch_size", type=int, default=16, help="images per process per micro-batch.")
    g.add_argument("--learning_rate", type=float, default=0.0025,
                   help="Adam lr of G and D (before lazy-reg correction).")
    g.add_argument("--g_lr", type=float, default=None, help="override --learning_rate for G.")
    g.add_argument("--d_lr", type=float, default=None, help="override --learning_rate for D.")
    g.add_argument("--adam_beta1", type=float, default=0.0)
    g.add_argument("--adam_beta2", type=float, default=0.99)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--r1_gamma", type=float, default=None,
                   help="R1 weight; default 0.0002 * resolution^2 / global batch (the NVlabs 'auto' heuristic, "
                        "tuned for natural images; the flat-colour demo domain collapses with it: use ~10 there, "
                        "see docs/results.md).")
    g.add_argument("--r1_interval", type=int, default=16, help="apply R1 every N steps (0: never).")
    g.add_argument("--pl_weight", type=float, default=2.0, help="path-length regularisation weight (0: off).")
    g.add_argument("--pl_interval", type=int, default=4,
                   help="apply path-length regularisation every N steps (0: never).")
    g.add_argument("--pl_decay", type=float, default=0.01, help="decay of the running mean path length.")
    g.add_argument("--pl_batch_shrink", type=int, default=2, help="path-length batch = batch // this.")
    g.add_argument("--style_mixing_prob", type=float, default=0.9)
    g.add_argument("--ema_kimg", type=float, default=None,
                   help="EMA half-life in thousands of images; default global batch * 10 / 32.")
    g.add_argument("--ema_rampup", type=float, default=0.05,
                   help="cap the EMA half-life at this fraction of the images seen so far (0: no ramp-up).")
    g.add_argument("--channels_last", action="store_true",
                   help="keep G's and D's weights and the real images in channels-last memory format "
                        "(faster with bf16 on CPU: benchmarks/bench_train_step.py, docs/results.md).")

    g = p.add_argument_group("augmentation")
    g.add_argument("--augment", default="none",
                   help="comma list of flip, translation, color (or 'all', 'none'): differentiable augmentation "
                        "of every image D sees.")
    g.add_argument("--augment_p", type=float, default=0.2,
                   help="probability of each augmentation per image (fixed, or the starting value with --ada_target).")
    g.add_argument("--ada_target", type=float, default=None,
                   help="adapt p so that E[sign(D(real))] stays at this value (ADA uses 0.6; p then starts at 0 "
                        "unless --augment_p is given).")
    g.add_argument("--ada_interval", type=int, default=4, help="adjust p every N steps.")
    g.add_argument("--ada_kimg", type=float, default=500.0, help="p can move from 0 to 1 in this many kimg.")
    g.add_argument("--blur_sigma", type=float, default=0.0,
                   help="Gaussian blur (pixels) of every image D sees at the start, fading out linearly "
                        "(StyleGAN3 uses 10 at 256+ px; 0: off). Stabilises early training.")
    g.add_argument("--blur_fade_kimg", type=float, default=100.0,
                   help="the blur reaches 0 after this many thousand images.")

    g = p.add_argument_group("initialisation")
    g.add_argument("--init_from", default=None,
                   help="start from a checkpoint's weights (G, D, EMA G) and counters with fresh optimizer states: "
                        "for a checkpoint copied without its optimizer files (e.g. to a GPU machine). Needs "
                        "model.safetensors, model_1.safetensors, generator_ema/ and training_state.json. Ignored when "
                        "--resume_from_checkpoint finds a checkpoint (a stopped run goes on from its own). A "
                        "checkpoint with a smaller --channel_base/--channel_max is widened to this run's, computing "
                        "the same function (generation/stylegan2/widen.py). Also takes a generator model folder "
                        "(config.json + model.safetensors: checkpoints/stylegan2-demo64, a `hdvila convert stylegan2` "
                        "output, a run's generator/) with the same settings: G and EMA G start from it, D from "
                        "--init_discriminator, else from its discriminator/ subfolder, else fresh (see "
                        "--d_warmup_steps); counters start at 0 and the EMA ramp-up is off, as StyleGAN2-ADA does when "
                        "it resumes from a pickle.")
    g.add_argument("--init_discriminator", default=None,
                   help="with --init_from GENERATOR_FOLDER: the discriminator model folder to start D from "
                        "(e.g. a run's discriminator/ or `hdvila convert stylegan2 --which D` output).")
    g.add_argument("--d_warmup_steps", type=int, default=0,
                   help="after --init_from, hold G (and its EMA) still for this many steps while D trains: a "
                        "fresh discriminator first learns to tell the generator's images from real ones, so "
                        "its first, meaningless gradients never reach a trained G. Against a good generator a fresh D "
                        "needs thousands of steps and a small --r1_gamma (R1 flattens a D that has nothing to "
                        "separate yet; docs/results.md).")
    return _check


def _check(p: argparse.ArgumentParser, a: argparse.Namespace, argv: Sequence[str]) -> None:
    from generation.stylegan2.augment import parse_ops

    try:
        a.augment_ops = parse_ops(a.augment)
    except ValueError as e:
        p.error(str(e))
    if a.ada_target is not None and "--augment_p" not in argv:
        a.augment_p = 0.0
    if a.resolution < 8 or a.resolution & (a.resolution - 1):
        p.error(f"--resolution must be a power of two >= 8, got {a.resolution}")
    if min(a.channel_base // a.resolution, a.channel_max) < 1:
        p.error(f"--channel_base {a.channel_base} leaves no channels at {a.resolution}px "
                f"(channels = min(channel_base // res, channel_max))")
    for name in ("train_batch_size", "z_dim", "w_dim", "mapping_layers", "pl_batch_shrink"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    for name in ("r1_interval", "pl_interval", "d_warmup_steps"):
        if getattr(a, name) < 0:
            p.error(f"--{name} must be >= 0")
    group = min(a.mbstd_group_size, a.train_batch_size)
    if a.mbstd_group_size < 1 or a.train_batch_size % group:
        p.error(f"--train_batch_size {a.train_batch_size} must be a multiple of the minibatch-std group "
                f"size {group} (--mbstd_group_size)")
    if not 0 <= a.augment_p <= 1:
        p.error("--augment_p must be in [0, 1]")
    if a.blur_sigma < 0 or a.blur_fade_kimg < 0:
        p.error("--blur_sigma and --blur_fade_kimg must be >= 0")
    if a.ada_target is not None and not 0 < a.ada_target < 1:
        p.error("--ada_target must be in (0, 1)")
    if (a.init_discriminator or a.d_warmup_steps) and not a.init_from:
        p.error("--init_discriminator and --d_warmup_steps go with --init_from")
    if a.ada_target is not None and not a.augment_ops:
        p.error("--ada_target needs --augment (which operations to apply)")
