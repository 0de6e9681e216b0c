"""``hdvila assemble-edit OUT --encoder DIR --mapper DIR``: an EditPipeline folder from a trained encoder
and mapper, with the generator and HD-VILA model they were trained for.

    hdvila assemble-edit checkpoints/edit-demo64 --encoder runs/encoder-demo64/encoder \\
        --mapper runs/mapper-demo64/mapper --fp16

The generator defaults to the bundled ``stylegan2-demo64`` and HD-VILA to the bundled ``hdvila-mini``
(pass ``--generator`` with an NVlabs ``.pkl`` or a model folder, ``--hdvila`` with a model folder for
your own). An encoder or mapper trained for another generator, or a mapper guided by another HD-VILA
model, is refused with a message that says which. ``--fp16`` stores the weights as float16 (half
the bytes; they load as float32). OUT is replaced as a whole, and only once everything is written; it
must be a new or empty folder or an earlier pipeline folder (one with ``pipeline_index.json``): any other
folder or a file there is refused, untouched.
"""

from __future__ import annotations

import argparse

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("out",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("out", help="pipeline folder to write")
    parser.add_argument("--encoder", required=True, help="LatentEncoder model folder (generation/train_encoder.py)")
    parser.add_argument("--mapper", default=None, help="EditMapper model folder (generation/train_mapper.py); "
                        "without it the pipeline edits by optimisation only")
    parser.add_argument("--generator", default=None, help="StyleGAN2 generator: model folder or NVlabs .pkl "
                        "(default: the bundled stylegan2-demo64)")
    parser.add_argument("--hdvila", default=None, help="HD-VILA model folder (default: the bundled hdvila-mini)")
    parser.add_argument("--fp16", action="store_true", help="store the weights as float16")


def run(args: argparse.Namespace) -> int:
    import torch

    from generation.editing.encoder import LatentEncoder
    from generation.editing.mapper import EditMapper
    from generation.editing.pipeline_edit import EditPipeline
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.atomic import check_replaceable
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    check_replaceable(args.out, "pipeline_index.json", "edit pipeline folder", f"OUT {args.out}")
    g_path = resolve_model_path(args.generator, "stylegan2-demo64", option="--generator",
                                accepts="a StyleGAN2 model folder or an NVlabs .pkl")
    h_path = resolve_model_path(args.hdvila, "hdvila-mini", option="--hdvila")
    encoder = LatentEncoder.from_pretrained(resolve_model_path(args.encoder, "", option="--encoder"))
    mapper = EditMapper.from_pretrained(resolve_model_path(args.mapper, "", option="--mapper")) if args.mapper else None
    hdvila = HDVILAModel.from_pretrained(h_path).eval()
    pipe = EditPipeline(hdvila=hdvila, processor=HDVILAProcessor.from_config(hdvila.config),
                        generator=load_stylegan2(g_path).eval(), encoder=encoder, mapper=mapper)
    pipe.check_components()
    out = pipe.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    EditPipeline.from_pretrained(out)  # read back: what was written loads
    print(f"{out}: EditPipeline with {args.encoder}" + (f" and {args.mapper}" if args.mapper else " (no mapper)")
          + f", generator {g_path}, HD-VILA {h_path}" + (", float16" if args.fp16 else ""))
    return 0
