"""``hdvila eval-edit [--model DIR] [--num 200] [--methods mapper,optimize]``: measure an edit pipeline
on held-out demo renders with the attribute judge (:func:`generation.presets.demo_eval.evaluate_edits`).

Per method and edited attribute: success (the judge reads the asked value) and preservation (the
judge reads every other attribute unchanged from the source, and from the reconstruction), and the
encoder's inversion PSNR. ``--wording heldout`` words the prompts with synonyms never seen in
training; ``--refine-steps N`` inverts with the encoder followed by N projector steps, as
``hdvila edit --refine-steps`` does (``--refine-texture W``: their texture-loss weight, 0 for pixel
losses only).
``--inversion N`` also measures the inversion PSNR of the encoder, of N projector steps from
``w_avg`` and of the encoder followed by N projector steps. ``--clips N`` also measures temporal
consistency on N test videos: one edit as a clip against the same edit frame by frame
(frame-to-frame change relative to the source, judge flips, success per frame). ``--value-share N``
also measures, on N test renders, the share of the mapper offset's energy that varies with the asked
value, per attribute (0: the mapper ignores the value).
"""

from __future__ import annotations

import argparse
import json

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("json", "figure")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--model", default=None,
                        help="EditPipeline folder (default: the bundled checkpoints/edit-demo64)")
    parser.add_argument("--num", type=int, default=200, help="test-split renders, four edits each (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wording", choices=["train", "heldout"], default="train")
    parser.add_argument("--methods", default="mapper",
                        help="comma-separated: mapper, optimize, mapper+optimize, prior (the mapper's value prior "
                        "alone), reconstruction (no edit: the baseline) ('none': no edits, e.g. with --inversion "
                        "or --clips only)")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    parser.add_argument("--refine", type=int, default=50, help="optimisation steps after the mapper (default 50)")
    parser.add_argument("--refine-steps", type=int, default=0, metavar="N",
                        help="invert with the encoder followed by N projector steps (slower, more faithful; default 0)")
    parser.add_argument("--refine-texture", type=float, default=None, metavar="W",
                        help="the refinement's texture-loss weight (default: EditPipeline.invert's; 0: pixel losses "
                             "only, as before the texture loss)")
    parser.add_argument("--guide-views", type=int, default=None, metavar="V",
                        help="optimisation: score the mean guide embedding of V random views of each edit "
                             "(default: optimize_edit's)")
    parser.add_argument("--judge", default=None, help="attribute judge folder (default: the bundled judge)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the metrics as JSON")
    parser.add_argument("--figure", default=None, metavar="PNG", help="source | reconstruction | four edits, 6 renders")
    parser.add_argument("--inversion", type=int, default=0, metavar="N",
                        help="also measure inversion PSNR: encoder, N projector steps, encoder + N steps")
    parser.add_argument("--clips", type=int, default=0, metavar="N", help="also evaluate clip editing on N test videos")
    parser.add_argument("--clip-frames", type=int, default=16, help="frames per test video (default 16)")
    parser.add_argument("--value-share", type=int, default=0, metavar="N",
                        help="also measure how much of the mapper's offset varies with the asked value (N renders)")
    parser.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from apps.pipelines import load_edit_pipeline
    from generation.presets.demo_eval import METHODS, comparison_figure, evaluate_edits, format_table
    from hdvila.judge.model import load_judge

    methods = () if args.methods == "none" else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or (not methods and args.methods != "none"):
        raise UserError(f"--methods takes a comma-separated list of {', '.join(METHODS)} (or 'none'); "
                        f"got {args.methods!r}")
    if args.num < 0 or (args.num == 0 and not (args.clips or args.inversion or args.value_share)):
        raise UserError(f"--num must be >= 1 (or 0 with --clips, --inversion or --value-share), got {args.num}")
    if args.clips < 0 or args.clip_frames < 2:
        raise UserError("--clips must be >= 0 and --clip-frames >= 2")
    if args.value_share < 0:
        raise UserError(f"--value-share must be >= 0, got {args.value_share}")
    if args.refine_steps < 0:
        raise UserError(f"--refine-steps must be >= 0, got {args.refine_steps}")
    if args.refine_texture is not None and (args.refine_texture < 0 or not (args.refine_steps or args.inversion)):
        raise UserError(f"--refine-texture must be >= 0 and goes with --refine-steps N or --inversion N, "
                        f"got {args.refine_texture} (--refine-steps {args.refine_steps}, --inversion {args.inversion})")
    if args.guide_views is not None and args.guide_views < 0:
        raise UserError(f"--guide-views must be >= 0, got {args.guide_views}")
    pipe = load_edit_pipeline(args.model, device=args.device)
    judge = load_judge(args.judge)
    result = {}
    if args.inversion:
        from generation.presets.demo_eval import evaluate_inversion, format_inversion_table

        result["inversion"] = evaluate_inversion(pipe, num=args.num or 200, steps=args.inversion, seed=args.seed,
                                                 texture_weight=args.refine_texture)
        print(format_inversion_table(result["inversion"]))
    if args.num and methods:
        edits = evaluate_edits(pipe, judge, num=args.num, seed=args.seed, wording=args.wording,
                               methods=methods, steps=args.steps, refine=args.refine, refine_steps=args.refine_steps,
                               refine_texture=args.refine_texture,
                               optimize_kwargs={} if args.guide_views is None else {"guide_views": args.guide_views})
        result.update(edits)
        print(format_table(edits))
        if args.figure:  # the mapper, else the first method that edits (the reconstruction is a column of each)
            shown = "mapper" if "mapper" in methods else next((m for m in methods if m != "reconstruction"), methods[0])
            print(f"wrote {comparison_figure(edits, args.figure, shown)}")
    if args.clips:
        from generation.presets.demo_eval import evaluate_clips, format_clip_table

        result["clips"] = evaluate_clips(pipe, judge, num=args.clips, frames=args.clip_frames, seed=args.seed,
                                         method="optimize" if methods and methods[0] == "optimize" else "mapper",
                                         steps=args.steps, refine_steps=args.refine_steps,
                                         refine_texture=args.refine_texture)
        print(format_clip_table(result["clips"]))
    if args.value_share:
        from generation.presets.demo_eval import offset_value_share

        if pipe.mapper is None:
            raise UserError("--value-share measures the mapper, and this pipeline has none.")
        result["value_share"] = offset_value_share(pipe, num=args.value_share, seed=args.seed)
        print("share of the mapper offset's energy that varies with the asked value: "
              + ", ".join(f"{a} {100 * v:.1f}%" for a, v in result["value_share"].items()))
    if args.json:
        from hdvila.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({k: v for k, v in result.items() if k != "figure"}, indent=1) + "\n")
    return 0
