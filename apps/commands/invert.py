"""``hdvila invert IMAGE OUT_DIR``: project an image into a StyleGAN2 generator's W or W+ space
(:func:`generation.stylegan2.projector.project`), writing the latent, the reconstruction and the target."""

from __future__ import annotations

import argparse
from pathlib import Path

from hdvila.errors import UserError

GENERATOR_KINDS = "a model folder (config.json + model.safetensors), an NVlabs .pkl or a rosinality .pt"


#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from generation.stylegan2.projector import (
        BUNDLED_GENERATOR,
        LATENT_FILE,
        PERCEPTUAL,
        RECONSTRUCTION_FILE,
        SPACES,
        TARGET_FILE,
    )

    parser.add_argument("image", help="image to invert (the input policy of `hdvila edit`: centre-cropped to a square "
                        "and resized to the generator's size; under 8 px a side or longer than 4:1 refused)")
    parser.add_argument("out_dir", help=f"folder for {LATENT_FILE}, {RECONSTRUCTION_FILE} and {TARGET_FILE}")
    parser.add_argument("--generator", default=None,
                        help=f"StyleGAN2 generator: a model folder, an NVlabs .pkl or a rosinality .pt "
                             f"(default: the bundled checkpoints/{BUNDLED_GENERATOR})")
    parser.add_argument("--space", choices=SPACES, default="w+", help="latent space (default w+)")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default 0.1)")
    parser.add_argument("--perceptual", choices=PERCEPTUAL, default="auto",
                        help="perceptual term: LPIPS if its weights exist locally ('auto'), 'lpips', "
                             "'multiscale' (pixel/gradient pyramid) or 'none'")
    parser.add_argument("--no-noise", dest="optimize_noise", action="store_false",
                        help="keep the generator's stored noise maps instead of optimising them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")


#: Bounds of the numeric options (checked before anything is loaded or written).
MAX_STEPS = 100_000
MAX_LR = 10.0
MAX_SEED = 2**63 - 1


def check_options(args: argparse.Namespace) -> None:
    """A one-line :class:`UserError` for a numeric option out of range (before any model is loaded)."""
    import math

    if not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps must be between 1 and {MAX_STEPS:,}, got {args.steps}")
    if not (math.isfinite(args.lr) and 0 < args.lr <= MAX_LR):
        raise UserError(f"--lr must be a number > 0 and <= {MAX_LR:g}, got {args.lr:g} (default 0.1)")
    if not 0 <= args.seed <= MAX_SEED:
        raise UserError(f"--seed must be between 0 and 2**63-1, got {args.seed}")


def run(args: argparse.Namespace) -> int:
    from generation.editing.pipeline_edit import MIN_SIDE
    from generation.pipeline_utils import fit_to_square
    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.projector import BUNDLED_GENERATOR, PSNR_CONVENTION, project, save_projection
    from hdvila.device import get_device, use_cpu_threads
    from hdvila.imageio import load_image
    from hdvila.paths import resolve_model_path
    from hdvila.tensors import pil_to_tensor

    out_dir = Path(args.out_dir)  # a folder (apps/cli.py refuses a file there before run)
    check_options(args)
    # Everything that can fail on the inputs happens before anything is written.
    image = load_image(args.image)
    gen_path = resolve_model_path(args.generator, BUNDLED_GENERATOR, option="--generator", accepts=GENERATOR_KINDS)
    G = load_stylegan2(gen_path)
    if G.img_channels != 3:
        raise UserError(f"{gen_path} makes {G.img_channels}-channel images; inversion needs an RGB generator.")
    r = G.img_resolution
    target, note = fit_to_square(pil_to_tensor(image), r, Path(args.image).name, f"the generator's {r}x{r}",
                                 min_side=MIN_SIDE, task="invert")
    target = target.unsqueeze(0)
    if note:
        print(f"note: {note}")
    if get_device(args.device).type == "cpu":
        use_cpu_threads("compute")
    result = project(G, target, space=args.space, steps=args.steps, lr=args.lr, perceptual=args.perceptual,
                     optimize_noise=args.optimize_noise, seed=args.seed, device=args.device, progress=True)
    paths = save_projection(out_dir, result, target, generator=str(gen_path))
    print(f"PSNR {result.psnr:.2f} dB ({PSNR_CONVENTION}), {args.space.upper()} space, {result.steps} steps "
          f"in {result.time_s:.1f} s; loss: {result.loss}")
    print("wrote " + ", ".join(map(str, paths)))
    return 0
