#!/usr/bin/env python
"""Train an unconditional StyleGAN2 generator with Hugging Face Accelerate.

A standalone example script in the style of diffusers' ``examples/``::

    accelerate launch generation/train_stylegan2.py --data demo --resolution 64 --output_dir runs/sg2
    python generation/train_stylegan2.py --data path/to/images --resolution 128 --output_dir runs/mine

Several processes on one CPU machine (gloo): ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
--num_processes 2 generation/train_stylegan2.py ...``. (``accelerate launch --cpu --num_processes 2``
starts ONE process unless an MPI hostfile is configured; the log line "N process(es)" shows what ran.)

Method (StyleGAN2 / StyleGAN2-ADA training, re-implemented from the papers' descriptions):

- non-saturating logistic loss: G minimises ``softplus(-D(G(z)))``, D minimises
  ``softplus(D(G(z))) + softplus(-D(x))``;
- lazy R1 on reals every ``--r1_interval`` (16) steps, weight ``gamma/2 * interval``; path-length
  regularisation of G every ``--pl_interval`` (4) steps on ``batch / --pl_batch_shrink`` samples,
  weight ``--pl_weight * interval``, running mean decay ``--pl_decay``. Each regulariser is its own
  optimiser step; both networks use Adam (lr 0.0025, betas (0, 0.99)) with ``lr * c`` and
  ``betas ** c``, ``c = interval / (interval + 1)``;
- style mixing (``--style_mixing_prob`` 0.9), EMA generator with a half-life of ``--ema_kimg``
  thousand images and a ramp-up (``--ema_rampup``), optional differentiable augmentation of every
  image D sees (``--augment``, fixed or adaptive p, see ``generation/stylegan2/augment.py``), and an
  optional Gaussian blur of D's inputs that fades out (``--blur_sigma``, ``--blur_fade_kimg``).

Every step runs four phases: G main, G path-length (on its steps), D main, D R1 (on its steps);
each phase accumulates ``--gradient_accumulation_steps`` micro-batches (gradients are synchronised
across processes only on the last one) and then steps its optimiser. Accelerate's ``accumulate()``
counts one backward per model per micro-step, which does not fit several phases per step, so the
script accumulates explicitly with ``accelerator.no_sync``.

G and D are wrapped separately by ``accelerator.prepare`` (one DDP wrapper each). Randomness of step
``s`` on process ``r`` is seeded from ``(--seed, s, r)`` and data order is a function of
``(--seed, s)``, so resuming from a checkpoint continues exactly as an uninterrupted run would.

Precision: float32 by default. ``--mixed_precision bf16`` autocasts G and D to bfloat16 on CUDA
and on CPUs with native bf16 kernels (AVX512-BF16/AMX); with ``--channels_last`` as well, a step of
the 64 px default config runs about 2x faster on 2 CPU threads (benchmarks/bench_train_step.py).
Weights, Adam states, losses and penalties stay float32; checkpoints hold float32 row-major tensors,
so a run can switch precision or memory format when it resumes.

Outputs under ``--output_dir``: ``checkpoint-{step}/`` (``accelerator.save_state``: models,
optimisers, RNG states, plus ``generator_ema/`` as a model folder and ``training_state.json``;
written to a temporary folder and renamed, so a crash never leaves a half checkpoint), ``samples/``
(validation grids, fixed z, truncation 1, constant noise), ``logs/`` (tensorboard), and at the end
``generator/`` (the EMA generator) and ``discriminator/``, each ``config.json`` +
``model.safetensors``, loadable with ``Generator.from_pretrained`` / ``Discriminator.from_pretrained``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python generation/train_stylegan2.py` from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

logger = logging.getLogger("train_stylegan2")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.json"
EMA_FOLDER = "generator_ema"
METRICS_FILE = "metrics.jsonl"
STATE_FORMAT = 1
# Settings that fix the networks' shapes: a checkpoint only resumes under the same values.
MODEL_KEYS = ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group_size",
              "num_fp16_res", "conv_clamp")


# ------------------------------------------------------------------------------------------------
# Arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train an unconditional StyleGAN2 generator (Accelerate).")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="demo",
                   help="'demo' (rendered demo-domain images) or a folder of images (searched recursively; "
                        "each is centre-cropped to a square and resized to --resolution).")
    g.add_argument("--resolution", type=int, default=64, help="image side in pixels (power of two, >= 8).")
    g.add_argument("--train_size", type=int, default=4096,
                   help="--data demo: number of distinct training images (rendered once, then cached).")
    g.add_argument("--data_cache_dir", default=None,
                   help="--data demo: where the rendered images are cached (default OUTPUT_DIR/data_cache).")
    g.add_argument("--skip_bad_images", action="store_true",
                   help="leave unreadable images out with a warning instead of stopping before training.")
    g.add_argument("--max_cache_gb", type=float, default=4.0,
                   help="image folders up to this size (decoded, at --resolution) are held in memory; larger "
                        "ones are read from disk at every step (use --dataloader_num_workers).")
    g.add_argument("--dataloader_num_workers", type=int, default=0,
                   help="worker processes for rendering demo images and reading large image folders.")

    g = p.add_argument_group("model")
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

    g = p.add_argument_group("optimisation")
    g.add_argument("--train_batch_size", type=int, default=16, help="images per process per micro-batch.")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--max_train_steps", type=int, default=1000)
    g.add_argument("--max_train_minutes", type=float, default=None,
                   help="also stop after this many minutes of the training loop (data preparation not counted), at "
                        "a step boundary; a checkpoint is saved there when --checkpointing_steps > 0, so the run can "
                        "be resumed with --resume_from_checkpoint latest.")
    g.add_argument("--learning_rate", type=float, default=0.0025, help="Adam lr of G and D (before lazy-reg correction).")
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
    g.add_argument("--pl_interval", type=int, default=4, help="apply path-length regularisation every N steps (0: never).")
    g.add_argument("--pl_decay", type=float, default=0.01, help="decay of the running mean path length.")
    g.add_argument("--pl_batch_shrink", type=int, default=2, help="path-length batch = batch // this.")
    g.add_argument("--style_mixing_prob", type=float, default=0.9)
    g.add_argument("--ema_kimg", type=float, default=None,
                   help="EMA half-life in thousands of images; default global batch * 10 / 32.")
    g.add_argument("--ema_rampup", type=float, default=0.05,
                   help="cap the EMA half-life at this fraction of the images seen so far (0: no ramp-up).")
    g.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no",
                   help="autocast G and D: fp16 on CUDA (with loss scaling), bf16 on CUDA or on a CPU with "
                        "native bf16 kernels (AVX512-BF16/AMX); elsewhere float32, with a warning. Weights, "
                        "optimiser state, losses and penalties stay float32.")
    g.add_argument("--channels_last", action="store_true",
                   help="keep G's and D's weights and the real images in channels-last memory format "
                        "(with bf16 on CPU: about 1.3x faster per step than bf16 alone, "
                        "benchmarks/bench_train_step.py).")
    g.add_argument("--seed", type=int, default=0)

    g = p.add_argument_group("augmentation")
    g.add_argument("--augment", default="none",
                   help="comma list of flip, translation, color (or 'all', 'none'): differentiable augmentation "
                        "of every image D sees.")
    g.add_argument("--augment_p", type=float, default=0.2,
                   help="probability of each augmentation per image (fixed, or the starting value with --ada_target).")
    g.add_argument("--ada_target", type=float, default=None,
                   help="adapt p so that E[sign(D(real))] stays at this value (ADA uses 0.6; p then starts at 0 "
                        "unless --augment_p is given).")
    g.add_argument("--blur_sigma", type=float, default=0.0,
                   help="Gaussian blur (pixels) of every image D sees at the start, fading out linearly "
                        "(StyleGAN3 uses 10 at 256+ px; 0: off). Stabilises early training.")
    g.add_argument("--blur_fade_kimg", type=float, default=100.0,
                   help="the blur reaches 0 after this many thousand images.")
    g.add_argument("--ada_interval", type=int, default=4, help="adjust p every N steps.")
    g.add_argument("--ada_kimg", type=float, default=500.0, help="p can move from 0 to 1 in this many kimg.")

    g = p.add_argument_group("outputs and logging")
    g.add_argument("--output_dir", required=True)
    g.add_argument("--checkpointing_steps", type=int, default=500,
                   help="save_state every N steps and at the last step (0: never).")
    g.add_argument("--checkpoints_total_limit", type=int, default=None, help="keep at most N checkpoints.")
    g.add_argument("--resume_from_checkpoint", default=None,
                   help="'latest' (the newest checkpoint in --output_dir; a new run if there is none) or a "
                        "checkpoint folder.")
    g.add_argument("--init_from", default=None,
                   help="start from a checkpoint's weights (G, D, EMA G) and counters with fresh optimizer states: "
                        "for a checkpoint copied without its optimizer files (e.g. to a GPU machine). Needs "
                        "model.safetensors, model_1.safetensors, generator_ema/ and training_state.json. Ignored when "
                        "--resume_from_checkpoint finds a checkpoint (a stopped run goes on from its own). A checkpoint "
                        "with a smaller --channel_base/--channel_max is widened to this run's, computing the same "
                        "function (generation/stylegan2/widen.py). Also takes a generator model folder (config.json + "
                        "model.safetensors: checkpoints/stylegan2-demo64, a `hdvila convert stylegan2` output, a run's "
                        "generator/) with the same settings: G and EMA G start from it, D from --init_discriminator, "
                        "else from its discriminator/ subfolder, else fresh (see --d_warmup_steps); counters start at "
                        "0 and the EMA ramp-up is off, as StyleGAN2-ADA does when it resumes from a pickle.")
    g.add_argument("--init_discriminator", default=None,
                   help="with --init_from GENERATOR_FOLDER: the discriminator model folder to start D from "
                        "(e.g. a run's discriminator/ or `hdvila convert stylegan2 --which D` output).")
    g.add_argument("--d_warmup_steps", type=int, default=0,
                   help="after --init_from, hold G (and its EMA) still for this many steps while D trains: a "
                        "fresh discriminator first learns to tell the generator's images from real ones, so "
                        "its first, meaningless gradients never reach a trained G. Against a good generator a fresh D "
                        "needs thousands of steps and a small --r1_gamma (R1 flattens a D that has nothing to "
                        "separate yet): docs/results.md, session 10.")
    g.add_argument("--validation_steps", type=int, default=500,
                   help="write a sample grid every N steps (0: only at the end).")
    g.add_argument("--num_validation_images", type=int, default=16)
    g.add_argument("--fd_steps", type=int, default=0,
                   help="every N steps (and at the end) measure FD-HDVILA of the EMA generator against the training "
                        "images (generation/stylegan2/metrics.py; lower is better) and append it to "
                        "OUTPUT_DIR/metrics.jsonl and the tracker; 0: never. The judge-free way to pick a checkpoint.")
    g.add_argument("--fd_samples", type=int, default=1000, help="generated and real images per FD-HDVILA measurement.")
    g.add_argument("--fd_model", default=None,
                   help="HD-VILA model folder whose image tower gives the features (default: checkpoints/hdvila-mini).")
    g.add_argument("--report_to", default="tensorboard", help="tracker for accelerate ('tensorboard', ..., or 'none').")
    g.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir.")
    g.add_argument("--num_threads", type=int, default=None,
                   help="CPU threads per process (default: the cores other programs leave idle, shared among the "
                        "local processes; on a busy machine pass 1, as oversubscribed threads are many times slower).")

    args = p.parse_args(argv)
    args.augment_ops = _parse_augment(p, args.augment)
    if args.ada_target is not None and "--augment_p" not in (argv if argv is not None else sys.argv[1:]):
        args.augment_p = 0.0
    _check_args(p, args)
    return args


def _parse_augment(parser: argparse.ArgumentParser, spec: str) -> tuple[str, ...]:
    from generation.stylegan2.augment import parse_ops

    try:
        return parse_ops(spec)
    except ValueError as e:
        parser.error(str(e))


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.resolution < 8 or a.resolution & (a.resolution - 1):
        p.error(f"--resolution must be a power of two >= 8, got {a.resolution}")
    if min(a.channel_base // a.resolution, a.channel_max) < 1:
        p.error(f"--channel_base {a.channel_base} leaves no channels at {a.resolution}px "
                f"(channels = min(channel_base // res, channel_max))")
    for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "z_dim", "w_dim",
                 "mapping_layers", "pl_batch_shrink", "num_validation_images", "fd_samples"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    for name in ("r1_interval", "pl_interval", "checkpointing_steps", "validation_steps", "dataloader_num_workers",
                 "fd_steps", "d_warmup_steps"):
        if getattr(a, name) < 0:
            p.error(f"--{name} must be >= 0")
    group = min(a.mbstd_group_size, a.train_batch_size)
    if a.mbstd_group_size < 1 or a.train_batch_size % group:
        p.error(f"--train_batch_size {a.train_batch_size} must be a multiple of the minibatch-std group "
                f"size {group} (--mbstd_group_size)")
    if a.data == "demo" and a.train_size < 1:
        p.error("--train_size must be >= 1")
    if a.checkpoints_total_limit is not None and a.checkpoints_total_limit < 1:
        p.error("--checkpoints_total_limit must be >= 1")
    if a.max_train_minutes is not None and a.max_train_minutes <= 0:
        p.error("--max_train_minutes must be > 0")
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


# ------------------------------------------------------------------------------------------------
# Training pieces


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

    global_step: int = 0
    cur_nimg: int = 0
    pl_mean: float = 0.0
    g_frozen_until: int = 0  # --d_warmup_steps: G is not updated before this step
    ema_rampup: bool = True  # off for a run started from model folders (no image count to ramp over)
    ada: dict | None = None
    model: dict = field(default_factory=dict)  # MODEL_KEYS of the run, checked on resume
    format: int = STATE_FORMAT


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions and matmuls natively (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_mixed_precision(requested: str, cuda: bool) -> str:
    """The Accelerate ``mixed_precision`` to train with: ``requested`` where this machine runs it
    fast, else ``"no"`` with a warning (fp16 autocast needs CUDA; bf16 on CPU needs oneDNN's native
    bf16 kernels, without which it is slower than float32)."""
    if requested == "no" or cuda:
        return requested
    if requested == "bf16" and cpu_has_native_bf16():
        return requested
    why = "needs CUDA" if requested == "fp16" else "needs a CPU with native bf16 kernels (AVX512-BF16 or AMX)"
    warnings.warn(f"--mixed_precision {requested} {why}; training in float32.", stacklevel=2)
    return "no"


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of training step ``step`` on process ``rank`` (a 63-bit integer)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0]) >> 1


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those holding training_state.json) in ``output_dir``, oldest first."""
    found = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            m = CHECKPOINT_RE.match(child.name)
            if m and child.is_dir() and (child / STATE_FILE).is_file():
                found.append((int(m.group(1)), child))
    return sorted(found)


def resolve_resume(output_dir: Path, spec: str | None) -> Path | None:
    from hdvila.errors import UserError

    if not spec:
        return None
    if spec == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(spec)
    if not path.exists() and (output_dir / spec).exists():
        path = output_dir / spec
    if not path.is_dir():
        raise UserError(f"--resume_from_checkpoint {spec}: no such checkpoint folder (looked in the current "
                        f"folder and in {output_dir}).")
    if not (path / STATE_FILE).is_file():
        raise UserError(f"{path} is not a complete checkpoint of this script ({STATE_FILE} is missing).")
    return path


def network_configs(model: dict):
    """(generator config, discriminator config) for a run's MODEL_KEYS settings."""
    from generation.stylegan2 import DiscriminatorConfig, StyleGAN2Config

    g = StyleGAN2Config(z_dim=model["z_dim"], w_dim=model["w_dim"], img_resolution=model["resolution"],
                        mapping_layers=model["mapping_layers"], channel_base=model["channel_base"],
                        channel_max=model["channel_max"], num_fp16_res=model["num_fp16_res"],
                        conv_clamp=model["conv_clamp"])
    d = DiscriminatorConfig(img_resolution=model["resolution"], channel_base=model["channel_base"],
                            channel_max=model["channel_max"], mbstd_group_size=model["mbstd_group_size"],
                            num_fp16_res=model["num_fp16_res"], conv_clamp=model["conv_clamp"])
    return g, d


def widened_settings(saved: dict, now: dict) -> dict:
    """The widening from a checkpoint's model settings to this run's: {key: new value} when the two differ
    only by larger ``channel_base``/``channel_max`` (generation/stylegan2/widen.py), else {}."""
    from generation.stylegan2.widen import WIDENABLE

    diff = {k: v for k, v in now.items() if saved.get(k) != v}
    if diff and set(diff) <= set(WIDENABLE) and all(saved.get(k) is not None and v > saved[k] for k, v in diff.items()):
        return diff
    return {}


def load_widened(folder: Path, saved: dict, widening: dict, seed: int):
    """A checkpoint's G, D and EMA G (CPU, float32), each widened by ``widening`` to the same function.
    G and its EMA copy get the same initial values for their new channels."""
    from generation.stylegan2 import Discriminator, Generator
    from generation.stylegan2.widen import widen
    from hdvila.errors import UserError
    from hdvila.modeling_utils import load_weights

    g_cfg, d_cfg = network_configs(saved)
    G, D, G_ema = GeneratorForTraining(Generator(g_cfg)), Discriminator(d_cfg), Generator(g_cfg)
    load_weights(G, folder / "model.safetensors")
    load_weights(D, folder / "model_1.safetensors")
    load_weights(G_ema, folder / EMA_FOLDER / "model.safetensors")
    try:
        return (widen(G.generator, seed=seed, **widening), widen(D, seed=seed + 1, **widening),
                widen(G_ema, seed=seed, **widening))
    except ValueError as e:
        raise UserError(f"--init_from {folder}: cannot widen it to this run's settings: {e}.") from None


def load_model_folders(g_folder: Path, d_folder: Path | None, model: dict):
    """(G, D or None) for ``--init_from GENERATOR_FOLDER``: the generator from ``g_folder``, the
    discriminator from ``d_folder``, else from ``g_folder/discriminator`` if that holds a model, else
    None (D starts fresh). Each must match the run's settings ``model`` (MODEL_KEYS); a mismatch is a
    UserError naming the differing fields."""
    from dataclasses import asdict as fields_of

    from generation.stylegan2 import Discriminator, Generator
    from hdvila.errors import UserError

    if d_folder is None and (g_folder / "discriminator" / "config.json").is_file():
        d_folder = g_folder / "discriminator"
    nets = []
    for cls, folder, want in zip((Generator, Discriminator), (g_folder, d_folder), network_configs(model)):
        net = cls.from_pretrained(folder) if folder is not None else None
        if net is not None and net.config != want:
            found, wanted = fields_of(net.config), fields_of(want)
            diff = ", ".join(f"{k} {v} (this run: {wanted[k]})" for k, v in found.items() if wanted[k] != v)
            raise UserError(f"{folder}: its {cls.__name__.lower()} differs from this run's: {diff}. Pass the "
                            f"same model flags (--resolution, --z_dim, --w_dim, --mapping_layers, --channel_base, "
                            f"--channel_max, ...) to start from it.")
        nets.append(net)
    return tuple(nets)


def demo_cache_file(data_cache_dir: str | None, output_dir: Path, seed: int, resolution: int, train_size: int) -> Path:
    """Where a --data demo run caches its rendered training images (uint8 .npy)."""
    cache_dir = Path(data_cache_dir) if data_cache_dir else output_dir / "data_cache"
    return cache_dir / f"demo-train-seed{seed}-{resolution}px-{train_size}.npy"


def build_dataset(args: argparse.Namespace, accelerator, output_dir: Path):
    """-> (dataset whose items are float [3, R, R] in [-1, 1], description)."""
    from generation.data import ImageFolderDataset, UInt8ImageDataset, render_demo_images, scan_image_folder

    show = accelerator.is_local_main_process
    if args.data == "demo":
        cache = demo_cache_file(args.data_cache_dir, output_dir, args.seed, args.resolution, args.train_size)
        with accelerator.main_process_first():  # the main process renders and caches; the others read
            pixels = render_demo_images(args.train_size, args.resolution, seed=args.seed, cache_file=cache,
                                        num_workers=args.dataloader_num_workers, progress=show)
        return UInt8ImageDataset(pixels), f"demo domain, {len(pixels)} rendered images"
    nbytes = 3 * args.resolution ** 2
    from generation.data import list_image_files

    num_files = len(list_image_files(args.data))
    keep = num_files * nbytes <= args.max_cache_gb * 2 ** 30
    files, pixels = scan_image_folder(args.data, args.resolution, skip_bad=args.skip_bad_images,
                                      keep_pixels=keep, progress=show)
    if keep:
        return UInt8ImageDataset(pixels), f"{args.data}: {len(files)} images (held in memory)"
    return ImageFolderDataset(files, args.resolution), f"{args.data}: {len(files)} images (read from disk)"


def maybe_no_sync(accelerator, model: nn.Module, sync: bool):
    """No gradient all-reduce for this backward unless ``sync``."""
    return contextlib.nullcontext() if sync else accelerator.no_sync(model)


def clean_grads(params, enabled: bool) -> None:
    """Replace NaN/inf in gradients (not under fp16 loss scaling, whose overflow check needs them)."""
    if not enabled:
        return
    for p in params:
        if p.grad is not None:
            torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)


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


# ------------------------------------------------------------------------------------------------
# Main


def main(argv: list[str] | None = None) -> dict:
    """Run training; returns ``{"history": [per-step stats (main process)], "output_dir": Path,
    "global_step": int}``."""
    args = parse_args(argv)
    from hdvila.errors import UserError

    try:
        return train(args)
    except UserError as e:
        if __name__ == "__main__":
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


def train(args: argparse.Namespace) -> dict:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration
    from tqdm.auto import tqdm

    from generation.stylegan2 import Discriminator, Generator
    from generation.stylegan2 import losses as L
    from generation.data import StepBatchSampler
    from hdvila.device import suggested_cpu_threads
    from generation.stylegan2.augment import AdaptiveAugment, AugmentPipe, blur_sigma
    from hdvila.atomic import atomic_write_text
    from hdvila.errors import UserError
    from hdvila.imageio import save_image
    from hdvila.modeling_utils import load_weights

    torch.set_num_threads(args.num_threads or suggested_cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    # DDP notes that the gradient of a [1, N] weight has strides (1, 1) instead of (N, 1): the same
    # memory layout for a tensor with one row, so nothing is lost.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    output_dir = Path(args.output_dir)
    mixed = resolve_mixed_precision(args.mixed_precision, torch.cuda.is_available())
    report_to = None if args.report_to in (None, "", "none") else args.report_to
    # main() may run again in this process (tests, notebooks) with another precision; the process
    # group (PartialState) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=mixed, log_with=report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # ---- data (checked before anything is built: bad image folders stop here)
    dataset, data_desc = build_dataset(args, accelerator, output_dir)
    batch, accum = args.train_batch_size, args.gradient_accumulation_steps
    global_batch = batch * accum * world
    r1_gamma = args.r1_gamma if args.r1_gamma is not None else 0.0002 * args.resolution ** 2 / global_batch
    ema_kimg = args.ema_kimg if args.ema_kimg is not None else global_batch * 10 / 32

    # ---- networks
    torch.manual_seed(args.seed)
    g_cfg, d_cfg = network_configs({k: getattr(args, k) for k in MODEL_KEYS})
    G = Generator(g_cfg).train()
    D = Discriminator(d_cfg).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    G, D = G.to(memory_format=memory_format), D.to(memory_format=memory_format)
    G_train = GeneratorForTraining(G)

    def adam_settings(lr: float, interval: int) -> dict:
        """Adam's hyperparameters with the lazy-regularisation correction (NVlabs: lr and betas ** c)."""
        c = L.lazy_regularization_ratio(interval)
        return {"lr": lr * c, "betas": (args.adam_beta1 ** c, args.adam_beta2 ** c), "eps": args.adam_epsilon}

    pl_active = args.pl_weight > 0 and args.pl_interval > 0
    r1_active = r1_gamma > 0 and args.r1_interval > 0
    adam_G = adam_settings(args.g_lr or args.learning_rate, args.pl_interval if pl_active else 0)
    adam_D = adam_settings(args.d_lr or args.learning_rate, args.r1_interval if r1_active else 0)
    opt_G = torch.optim.Adam(G_train.parameters(), **adam_G)
    opt_D = torch.optim.Adam(D.parameters(), **adam_D)
    G_ddp, D_ddp, opt_G, opt_D = accelerator.prepare(G_train, D, opt_G, opt_D)
    G_raw, D_raw = accelerator.unwrap_model(G_ddp), accelerator.unwrap_model(D_ddp)

    augment = AugmentPipe(args.augment_ops, p=args.augment_p if args.augment_ops else 0.0)
    ada = (AdaptiveAugment(augment, target=args.ada_target, interval=args.ada_interval, speed_kimg=args.ada_kimg)
           if args.ada_target is not None else None)
    state = TrainState(model={k: getattr(args, k) for k in MODEL_KEYS})

    # ---- checkpoint hooks: the EMA generator as a model folder, counters as JSON
    def save_hook(models, weights, folder):
        # safetensors stores dense row-major tensors only (channels-last weights are not).
        weights[:] = [{k: v.contiguous() for k, v in w.items()} for w in weights]
        if accelerator.is_main_process:
            G_ema.save_pretrained(Path(folder) / EMA_FOLDER)
            state.ada = ada.state_dict() if ada is not None else None
            atomic_write_text(Path(folder) / STATE_FILE, json.dumps(asdict(state), indent=2))

    def load_hook(models, folder):
        load_weights(G_ema, Path(folder) / EMA_FOLDER / "model.safetensors", map_location=str(device))
        load_counters(folder)

    def load_counters(folder):
        raw = json.loads((Path(folder) / STATE_FILE).read_text())
        state.global_step, state.cur_nimg, state.pl_mean = raw["global_step"], raw["cur_nimg"], raw["pl_mean"]
        state.g_frozen_until, state.ema_rampup = raw.get("g_frozen_until", 0), raw.get("ema_rampup", True)
        if ada is not None and raw.get("ada"):
            ada.load_state_dict(raw["ada"])

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    resume = resolve_resume(output_dir, args.resume_from_checkpoint)
    if args.resume_from_checkpoint and resume is None:
        logger.info("no checkpoint in %s; starting a new run", output_dir)
    def check_model_settings(folder: Path) -> None:
        saved = json.loads((folder / STATE_FILE).read_text()).get("model", {})
        diff = {k: (saved.get(k), v) for k, v in state.model.items() if saved.get(k) != v}
        if diff:
            raise UserError(f"{folder} was trained with different model settings: "
                            + ", ".join(f"--{k} {old} (now {new})" for k, (old, new) in diff.items())
                            + ". Pass the same model flags to go on from it.")

    if resume is not None:
        check_model_settings(resume)
        logger.info("resuming from %s", resume)
        accelerator.load_state(str(resume))
        # Loading restores the saved hyperparameters with the moments; this command's flags win.
        for name, opt, settings in (("G", opt_G, adam_G), ("D", opt_D, adam_D)):
            for group in opt.param_groups:
                if group["lr"] != settings["lr"]:
                    logger.info("%s learning rate: %g in the checkpoint, %g now", name, group["lr"], settings["lr"])
                group.update(settings)
    elif args.init_from and not (Path(args.init_from) / STATE_FILE).is_file() \
            and (Path(args.init_from) / "config.json").is_file():
        init = Path(args.init_from)
        G_init, D_init = load_model_folders(init, Path(args.init_discriminator) if args.init_discriminator else None,
                                            state.model)
        G_raw.generator.load_state_dict(G_init.state_dict())
        G_ema.load_state_dict(G_init.state_dict())
        if D_init is not None:
            D_raw.load_state_dict(D_init.state_dict())
        elif args.d_warmup_steps == 0:
            logger.warning("--init_from %s: D starts fresh, and its first gradients may undo some of G's training; "
                           "--d_warmup_steps holds G still while D catches up (docs/results.md, session 10)", init)
        state.ema_rampup = False
        logger.info("starting from the model folder %s (G and EMA G) and %s (D); fresh optimizer states, "
                    "counters at 0, no EMA ramp-up", init,
                    args.init_discriminator or ("its discriminator/" if D_init is not None else "nothing: fresh"))
    elif args.init_from:
        init = Path(args.init_from)
        needed = [init / STATE_FILE, init / "model.safetensors", init / "model_1.safetensors",
                  init / EMA_FOLDER / "model.safetensors"]
        absent = [str(f.relative_to(init)) for f in needed if not f.is_file()]
        if absent:
            raise UserError(f"--init_from {init}: neither a checkpoint of this script (missing {', '.join(absent)}) "
                            f"nor a generator model folder (config.json + model.safetensors).")
        if args.init_discriminator:
            raise UserError(f"--init_discriminator goes with --init_from GENERATOR_FOLDER; {init} is a training "
                            f"checkpoint, whose own D is used.")
        saved = json.loads((init / STATE_FILE).read_text()).get("model", {})
        widening = widened_settings(saved, state.model)
        if widening:
            logger.info("starting from the weights and counters of %s, widened (%s; fresh optimizer states)", init,
                        ", ".join(f"{k} {saved[k]} -> {v}" for k, v in widening.items()))
            G_init, D_init, G_ema_init = load_widened(init, saved, widening, args.seed)
            G_raw.generator.load_state_dict(G_init.state_dict())
            D_raw.load_state_dict(D_init.state_dict())
            G_ema.load_state_dict(G_ema_init.state_dict())
            load_counters(init)
        else:
            check_model_settings(init)
            logger.info("starting from the weights and counters of %s (fresh optimizer states)", init)
            load_weights(G_raw, init / "model.safetensors", map_location=str(device))
            load_weights(D_raw, init / "model_1.safetensors", map_location=str(device))
            load_hook([], init)  # EMA G and the counters
    if resume is None and args.init_from:  # a new run: this command's warm-up, not the source run's
        state.g_frozen_until = state.global_step + args.d_warmup_steps
    global_step = state.global_step
    pl_mean = torch.tensor(state.pl_mean, dtype=torch.float32, device=device)

    sampler = StepBatchSampler(len(dataset), batch, accumulation=accum, rank=rank, world_size=world,
                               seed=args.seed, start_step=global_step)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=args.dataloader_num_workers,
                                         persistent_workers=args.dataloader_num_workers > 0,
                                         pin_memory=device.type == "cuda", generator=torch.Generator())
    batches = iter(loader)

    if accelerator.is_main_process:
        atomic_write_text(output_dir / "training_args.json", json.dumps(
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}, indent=2))
        if report_to:
            accelerator.init_trackers("train_stylegan2", config={
                k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()})
    n_g = sum(p.numel() for p in G.parameters())
    n_d = sum(p.numel() for p in D.parameters())
    logger.info("data: %s | G %.2fM params, D %.2fM params | %d process(es) on %s, %d thread(s) each | "
                "global batch %d | r1_gamma %.4g, ema_kimg %.3g | steps %d -> %d",
                data_desc, n_g / 1e6, n_d / 1e6, world, device, torch.get_num_threads(), global_batch,
                r1_gamma, ema_kimg, global_step, args.max_train_steps)

    fd_tracker = None
    if args.fd_steps and accelerator.is_main_process:
        from generation.stylegan2.metrics import FDTracker

        fd_tracker = FDTracker(dataset, args.fd_samples, model_dir=args.fd_model, device=device)

    def measure_fd(step: int) -> None:
        if fd_tracker is None:
            return
        fd = fd_tracker(G_ema)
        with open(output_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "kimg": state.cur_nimg / 1000, "fd_hdvila": fd}) + "\n")
        if report_to:
            accelerator.log({"metrics/fd_hdvila": fd}, step=step)
        logger.info("step %d: FD-HDVILA %.4f (%d samples)", step, fd, args.fd_samples)

    val_z = torch.randn([args.num_validation_images, args.z_dim],
                        generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    clean = accelerator.scaler is None

    def validate(step: int) -> None:
        if not accelerator.is_main_process:
            return
        grid = sample_grid(G_ema, val_z)
        path = save_image(grid, output_dir / "samples" / f"step-{step:06d}.png")
        if report_to == "tensorboard":
            from hdvila.tensors import unit_to_uint8

            accelerator.get_tracker("tensorboard", unwrap=True).add_image("samples", unit_to_uint8(grid), step)
        logger.info("samples: %s", path)

    def save_checkpoint(step: int) -> None:
        final, tmp = output_dir / f"checkpoint-{step}", output_dir / f".tmp-checkpoint-{step}"
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            if args.checkpoints_total_limit is not None:
                for _, old in list_checkpoints(output_dir)[:-args.checkpoints_total_limit]:
                    shutil.rmtree(old)
            logger.info("saved %s", final)
        accelerator.wait_for_everyone()

    history: list[dict] = []
    deadline = time.monotonic() + 60 * args.max_train_minutes if args.max_train_minutes else None
    last_saved = None
    progress = tqdm(total=args.max_train_steps, initial=global_step, desc="steps",
                    disable=not accelerator.is_local_main_process)
    stat_keys = ("loss_G", "loss_D_fake", "loss_D_real", "score_real", "score_fake", "sign_real", "r1_penalty",
                 "pl_penalty", "pl_length")
    last_validated = last_measured = None
    t_start, steps_run = time.perf_counter(), 0

    while global_step < args.max_train_steps:
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(args.seed, global_step, rank))
        reals = [next(batches).to(device, non_blocking=True, memory_format=memory_format) for _ in range(accum)]
        augment.blur_sigma = blur_sigma(state.cur_nimg, args.blur_sigma, args.blur_fade_kimg)
        sums = dict.fromkeys(stat_keys, 0.0)
        counts = dict.fromkeys(stat_keys, 0.0)

        def add(key: str, values: torch.Tensor) -> None:
            sums[key] += float(values.detach().float().sum())
            counts[key] += values.numel()

        train_g = global_step >= state.g_frozen_until
        do_pl = train_g and pl_active and global_step % args.pl_interval == 0
        do_r1 = r1_active and global_step % args.r1_interval == 0

        # -- G main: non-saturating loss through a frozen D
        D_raw.requires_grad_(False)
        opt_G.zero_grad(set_to_none=True)
        for k in range(accum if train_g else 0):
            z = torch.randn([batch, args.z_dim], device=device)
            with maybe_no_sync(accelerator, G_ddp, k == accum - 1):
                with accelerator.autocast():
                    fake, _ = G_ddp(z, style_mixing_prob=args.style_mixing_prob, update_w_avg=True)
                    logits = D_raw(augment(fake))
                loss = L.generator_loss(logits)
                accelerator.backward(loss.mean() / accum)
            add("loss_G", loss)
            add("score_fake", logits)
        if train_g:
            clean_grads(G_raw.parameters(), clean)
            opt_G.step()

        # -- G path-length regularisation (lazy)
        if do_pl:
            opt_G.zero_grad(set_to_none=True)
            pl_batch = max(1, batch // args.pl_batch_shrink)
            for k in range(accum):
                z = torch.randn([pl_batch, args.z_dim], device=device)
                with maybe_no_sync(accelerator, G_ddp, k == accum - 1):
                    with accelerator.autocast():
                        fake, ws = G_ddp(z, style_mixing_prob=args.style_mixing_prob)
                    lengths = L.path_lengths(fake, ws)
                    batch_mean = accelerator.reduce(lengths.detach().mean(), reduction="mean")
                    pl_mean = pl_mean.lerp(batch_mean, args.pl_decay)
                    penalty = L.path_length_penalty(lengths, pl_mean)
                    # `fake * 0` keeps every parameter in the graph (DDP expects a gradient for each).
                    loss = (penalty.mean() * args.pl_weight + fake[:, 0, 0, 0].float().mean() * 0) * args.pl_interval
                    accelerator.backward(loss / accum)
                add("pl_penalty", penalty)
                add("pl_length", lengths)
            clean_grads(G_raw.parameters(), clean)
            opt_G.step()
        D_raw.requires_grad_(True)

        # -- D main: logistic loss on fakes (from the current G, no grad) and reals
        G_raw.requires_grad_(False)
        opt_D.zero_grad(set_to_none=True)
        for k in range(accum):
            z = torch.randn([batch, args.z_dim], device=device)
            with torch.no_grad(), accelerator.autocast():
                fake, _ = G_raw(z, style_mixing_prob=args.style_mixing_prob)
            with accelerator.no_sync(D_ddp):
                with accelerator.autocast():
                    fake_logits = D_ddp(augment(fake.detach()))
                loss_fake = L.discriminator_loss(None, fake_logits)
                accelerator.backward(loss_fake.mean() / accum)
            with maybe_no_sync(accelerator, D_ddp, k == accum - 1):
                with accelerator.autocast():
                    real_logits = D_ddp(augment(reals[k]))
                loss_real = L.discriminator_loss(real_logits, None)
                accelerator.backward(loss_real.mean() / accum)
            add("loss_D_fake", loss_fake)
            add("loss_D_real", loss_real)
            add("score_real", real_logits)
            add("sign_real", real_logits.detach().sign())
        clean_grads(D_raw.parameters(), clean)
        opt_D.step()

        # -- D R1 regularisation (lazy)
        if do_r1:
            opt_D.zero_grad(set_to_none=True)
            for k in range(accum):
                real = reals[k].detach().requires_grad_(True)
                with maybe_no_sync(accelerator, D_ddp, k == accum - 1):
                    with accelerator.autocast():
                        real_logits = D_ddp(augment(real))
                    penalty = L.r1_penalty(real, real_logits)
                    loss = (penalty.mean() * (r1_gamma / 2) + real_logits.float().mean() * 0) * args.r1_interval
                    accelerator.backward(loss / accum)
                add("r1_penalty", penalty)
            clean_grads(D_raw.parameters(), clean)
            opt_D.step()
        G_raw.requires_grad_(True)

        # -- EMA, counters, adaptive augmentation
        beta = L.ema_beta(global_batch, state.cur_nimg, ema_kimg, args.ema_rampup if state.ema_rampup else 0)
        if train_g:
            L.update_ema(G_ema, G_raw.generator, beta)
        state.cur_nimg += global_batch
        global_step += 1
        state.global_step = global_step
        state.pl_mean = float(pl_mean)

        packed = torch.tensor([v for key in stat_keys for v in (sums[key], counts[key])], dtype=torch.float64,
                              device=device)
        packed = accelerator.reduce(packed, reduction="sum") if world > 1 else packed
        totals = {key: (float(packed[2 * i]), float(packed[2 * i + 1])) for i, key in enumerate(stat_keys)}
        if ada is not None:
            ada.accumulate(*totals["sign_real"])
            ada.step(global_batch)
        stats = {key: s / c for key, (s, c) in totals.items() if c > 0 and key != "sign_real"}
        stats.update(pl_mean=state.pl_mean, augment_p=augment.p, blur_sigma=augment.blur_sigma, ema_beta=beta,
                     kimg=state.cur_nimg / 1000,
                     sec_per_step=time.perf_counter() - t0)
        steps_run += 1
        if accelerator.is_main_process:
            history.append({"step": global_step, **stats})
        if report_to:
            accelerator.log({f"train/{k}": v for k, v in stats.items()}, step=global_step)
        progress.update(1)
        progress.set_postfix(G=f"{stats.get('loss_G', float('nan')):.3f}", D=f"{stats['loss_D_fake'] + stats['loss_D_real']:.3f}",
                             s_step=f"{stats['sec_per_step']:.2f}", refresh=False)

        if args.checkpointing_steps and global_step % args.checkpointing_steps == 0:
            save_checkpoint(global_step)
            last_saved = global_step
        if args.validation_steps and global_step % args.validation_steps == 0:
            validate(global_step)
            last_validated = global_step
        if args.fd_steps and global_step % args.fd_steps == 0:
            measure_fd(global_step)
            last_measured = global_step
        if deadline is not None:
            out_of_time = torch.tensor([float(time.monotonic() > deadline)], device=device)
            if world > 1:  # every process stops at the same step
                out_of_time = accelerator.reduce(out_of_time, reduction="sum")
            if float(out_of_time) > 0 and global_step < args.max_train_steps:
                logger.info("--max_train_minutes %g reached at step %d", args.max_train_minutes, global_step)
                break
    progress.close()
    if args.checkpointing_steps and last_saved != global_step and steps_run:
        save_checkpoint(global_step)  # the run can be continued from where it stopped

    if world > 1:  # self-check: DDP must have kept every replica identical
        sums = torch.stack([torch.stack([p.detach().double().sum() for p in m.parameters()]).sum()
                            for m in (G_raw, D_raw)])
        gathered = accelerator.gather(sums[None])
        if not bool((gathered == gathered[0]).all()):
            raise RuntimeError(f"G/D replicas differ across processes (parameter sums {gathered.tolist()})")
        logger.info("G and D replicas identical on all %d processes", world)
    if last_validated != global_step:
        validate(global_step)
    if args.fd_steps and last_measured != global_step and steps_run:
        measure_fd(global_step)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        G_ema.save_pretrained(output_dir / "generator")
        D_raw.save_pretrained(output_dir / "discriminator")
        elapsed = time.perf_counter() - t_start
        logger.info("done: step %d, %.1f kimg; %d steps in %.1f s (%.2f s/step); generator saved to %s",
                    global_step, state.cur_nimg / 1000, steps_run, elapsed, elapsed / max(steps_run, 1),
                    output_dir / "generator")
    accelerator.end_training()
    return {"history": history, "output_dir": output_dir, "global_step": global_step}


if __name__ == "__main__":
    main()
