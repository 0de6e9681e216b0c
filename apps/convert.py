"""``hdvila convert {hdvila,stylegan2} SRC OUT_DIR``: official checkpoints -> model folders."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["hdvila", "stylegan2"], help="what the source file holds")
    parser.add_argument("src", help="HD-VILA: hdvila_stage2.pt; StyleGAN2: NVlabs .pkl or rosinality .pt")
    parser.add_argument("out_dir", help="folder to write config.json + model.safetensors into")
    parser.add_argument("--which", choices=["G_ema", "G", "D"], default="G_ema",
                        help="StyleGAN2 pickles: which network to convert (default G_ema)")
    parser.add_argument("--preset", default="large", help="HD-VILA: architecture preset of the file (default large)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "hdvila":
        from hdvila.convert import convert_hdvila_checkpoint

        convert_hdvila_checkpoint(args.src, args.out_dir, preset=args.preset)
    else:
        from generation.stylegan2.convert import convert_stylegan2

        convert_stylegan2(args.src, args.out_dir, which=args.which)
    return 0
