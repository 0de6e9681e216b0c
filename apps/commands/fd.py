"""``hdvila fd GENERATOR... [--samples N] [--model DIR]``: FD-HDVILA of StyleGAN2 generators.

The FID recipe (Heusel et al. 2017) on HD-VILA image features instead of Inception's: the Fréchet
distance between Gaussians fitted to the features of generated samples and of demo-domain renders
(:mod:`generation.stylegan2.metrics`). Lower is better; the first row is the noise floor (two sets
of real renders). Prints a markdown table.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("generators", nargs="+", help="generator folders, NVlabs .pkl or rosinality .pt files")
    parser.add_argument("--samples", type=int, default=1000, help="generated and real images (default 1000)")
    parser.add_argument("--model", default=None, help="HD-VILA model folder (default: the bundled hdvila-mini)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.metrics import (
        REAL_SEED,
        frechet_distance,
        generator_samples,
        image_features,
        load_feature_model,
        real_images,
    )
    from hdvila.errors import UserError

    if args.samples < 2:
        raise UserError("--samples must be >= 2 (a covariance needs two samples)")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_feature_model(args.model)
    first = load_stylegan2(args.generators[0])
    res = first.img_resolution
    real = image_features(model, real_images(args.samples, res))
    floor = image_features(model, real_images(args.samples, res, seed=REAL_SEED + 1))
    print(f"| generator | FD-HDVILA ({args.samples} samples) |\n|---|---|")
    print(f"| real renders (noise floor) | {frechet_distance(floor, real):.4f} |")
    for path in args.generators:
        G = first if path == args.generators[0] else load_stylegan2(path)
        fake = image_features(model, generator_samples(G.eval(), range(args.samples)))
        print(f"| {path} | {frechet_distance(fake, real):.4f} |", flush=True)
    return 0
