"""``hdvila convert {hdvila,stylegan2} SRC OUT_DIR``: official checkpoints -> model folders.

HD-VILA: :func:`hdvila.convert.convert_hdvila_checkpoint` (the released ``hdvila_stage2.pt``);
StyleGAN2: :func:`generation.stylegan2.convert.convert_stylegan2` (NVlabs ``.pkl``, rosinality ``.pt``).
Nothing is written when a conversion fails.
"""

from __future__ import annotations

import argparse

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out_dir",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hdvila.configuration_hdvila import PRESETS

    parser.add_argument("kind", choices=["hdvila", "stylegan2"], help="what the source file holds")
    parser.add_argument("src", help="HD-VILA: hdvila_stage2.pt; StyleGAN2: NVlabs .pkl or rosinality .pt")
    parser.add_argument("out_dir", help="folder to write config.json + model.safetensors into")
    parser.add_argument("--which", choices=["G_ema", "G", "D"], default="G_ema",
                        help="StyleGAN2 pickles: which network to convert (default G_ema)")
    parser.add_argument("--preset", choices=PRESETS, default="large",
                        help="HD-VILA: architecture preset of the file (default large)")
    parser.add_argument("--non-strict", dest="strict", action="store_false",
                        help="HD-VILA: convert even when tensors are missing or of another shape (they keep their "
                             "initialisation and are listed); default: refuse and write nothing")


def run(args: argparse.Namespace) -> int:
    if args.kind == "hdvila":
        from hdvila.convert import convert_hdvila_checkpoint

        convert_hdvila_checkpoint(args.src, args.out_dir, preset=args.preset, strict=args.strict)
    else:
        from generation.stylegan2.convert import convert_stylegan2

        convert_stylegan2(args.src, args.out_dir, which=args.which)
    return 0
