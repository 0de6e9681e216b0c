"""``hdvila edit INPUT OUTPUT --prompt "..."``: text-guided editing of an image, a folder of images and
videos (recursive, relative paths kept) or a video (:class:`generation.editing.pipeline_edit.EditPipeline`).

Methods: ``mapper`` (one forward pass for any prompt; needs a pipeline with a trained mapper) or
``optimize`` (StyleCLIP's latent optimisation with HD-VILA, ``--steps`` steps). ``--strength`` scales
the edit (0: the reconstruction, 1: the edit, 2 at most). ``--refine-steps N`` refines each
inversion with N projector steps (slower, more faithful; ``--refine-texture W``: their texture-loss
weight, 0 for pixel losses only).

Input policy: an image or frame that is not the generator's size (64x64 for the bundled model) is
centre-cropped to a square and resized to it; the aspect is never distorted. Each output is at the
generator's resolution; the inversion PSNR of each file is printed and written to
``OUTPUT.json`` beside it (with the prompt, the method and the policy note). A prompt none of whose
words the mapper was trained on gets one warning before any file. A video is edited as one
clip: one edit offset for every frame, latents smoothed over ``--temporal-sigma`` frames; it is
written as an mp4 at the source frame rate with the source's audio track (copied, or re-encoded to
AAC; cut to the frames written). A rerun skips the outputs made with the same prompt and
options (their ``OUTPUT.json`` says; ``--overwrite`` redoes them); one made otherwise is kept and
reported as an error, one with no record is kept with a warning. Bad inputs go to the errors report
beside the outputs and make the exit status 1; every file is written atomically.

Faces (``--faces largest|all``, for a pipeline on an FFHQ generator and real photos): each image's
faces (the largest, or all) are detected, aligned as FFHQ at the generator's size, edited and pasted
back into the whole frame, which keeps its size; ``OUTPUT.json`` records each face's box, landmarks,
transform (quad and matrix) and inversion PSNR. A video follows one tracked face (smoothed
landmarks), edited as one clip and pasted back frame by frame at the video's size (the sound track
is kept, as without ``--faces``). A file without a face goes to the errors report.
"""

from __future__ import annotations

import argparse
import sys

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("output",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from apps.batch import add_batch_arguments
    from generation.editing.pipeline_edit import METHODS, STRENGTH_RANGE

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("input", help="an image, a video, or a folder of them")
    parser.add_argument("output", help="output file (for a file) or folder")
    parser.add_argument("--prompt", required=True, help="the change, e.g. \"make it striped\" or \"a blue one\"")
    parser.add_argument("--method", choices=METHODS, default="mapper")
    parser.add_argument("--strength", type=float, default=1.0,
                        help=f"edit strength, {STRENGTH_RANGE[0]:g} to {STRENGTH_RANGE[1]:g} (default 1)")
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps for --method optimize (default 300)")
    parser.add_argument("--refine-steps", type=int, default=0, metavar="N",
                        help="projector steps after the encoder: each costs about one generator pass forward and "
                        "back, and more of the frame (shape, pattern) survives; 25-50 is a good start (default 0: "
                        "the encoder alone)")
    parser.add_argument("--refine-texture", type=float, default=None, metavar="W",
                        help="the refinement's texture-loss weight (default: EditPipeline.invert's; 0: pixel losses "
                             "only, as before the texture loss)")
    parser.add_argument("--temporal-sigma", type=float, default=1.0,
                        help="latent smoothing over frames of a video, 0 to 50 frames (default 1)")
    parser.add_argument("--model", default=None,
                        help="EditPipeline folder (default: the bundled checkpoints/edit-demo64)")
    parser.add_argument("--generator", default=None, help="replace the pipeline's generator (folder or NVlabs .pkl); "
                        "the encoder and mapper must have been trained for it")
    parser.add_argument("--hdvila", default=None, help="replace the pipeline's HD-VILA model folder")
    parser.add_argument("--faces", choices=("largest", "all"), default=None,
                        help="edit the faces of real photos: detect, align as FFHQ, edit, paste back into the whole "
                             "frame (largest: the largest face; all: every face; a video follows one face)")
    add_batch_arguments(parser, batch_size=8, batch_help="images per pass")


def run(args: argparse.Namespace) -> int:
    from apps.batch import finish, print_note, start_batch, write_with_meta
    from apps.pipelines import edit_video, load_edit_pipeline
    from generation.editing.clips import check_temporal_sigma
    from generation.editing.pipeline_edit import INPUT_POLICY

    check_temporal_sigma(args.temporal_sigma)
    if args.refine_texture is not None and not (args.refine_texture >= 0 and args.refine_steps > 0):
        raise UserError(f"--refine-texture must be >= 0 and goes with --refine-steps N, "
                        f"got {args.refine_texture} (--refine-steps {args.refine_steps})")
    batch_run = start_batch(args)
    pipe = load_edit_pipeline(args.model, args.generator, args.hdvila, batch_run.device)
    pipe.set_progress_bar_config(disable=True)
    policy = INPUT_POLICY.format(r=pipe.resolution)
    if args.faces:
        from generation.faces.detect import load_detector
        from generation.faces.pipeline import FACE_POLICY

        load_detector()  # a missing detector fails the run once, before any file
        policy = FACE_POLICY.format(r=pipe.resolution, task="edited", scaled="")
    # Check the prompt and options once, before any file: a bad prompt fails the whole run at once.
    pipe.check_inputs(1, args.prompt, args.method, args.strength, args.steps, args.refine_steps, latents_given=False,
                      refine_texture=args.refine_texture)
    pipe.encode_prompt(args.prompt, 1)
    for note in pipe.prompt_notes(args.prompt):
        print(f"warning: {note}", file=sys.stderr)
    base = {"prompt": args.prompt, "method": args.method, "strength": args.strength, "input_policy": policy}
    if args.method == "optimize":
        base["steps"] = args.steps
    if args.refine_steps:  # the inversion's refinement, so an output says how it was made
        from generation.editing.pipeline_edit import refine_texture_weight

        base["refine_steps"] = args.refine_steps
        base["refine_texture"] = refine_texture_weight(args.refine_texture)
    if args.faces:
        base["faces_mode"] = args.faces

    def process(batch):
        from hdvila.imageio import animation_note, load_image, save_image

        if batch[0].kind == "video":
            job = batch[0]
            out = edit_video(pipe, job.src, job.dst, args.prompt, method=args.method, strength=args.strength,
                             steps=args.steps, refine_steps=args.refine_steps, refine_texture=args.refine_texture,
                             temporal_sigma=args.temporal_sigma, max_frames=args.max_frames, faces=args.faces,
                             write=lambda r, save: write_with_meta(job.dst, {
                                 **base, "input": str(job.src), "frames": r["frames"],
                                 "inversion_psnr_db": round(r["inversion_psnr"], 3), "note": r["note"],
                                 **({"faces": r["faces"].to_json()} if r.get("faces") else {})}, save))
            print(f"{job.src}: {out['frames']} frames, mean inversion PSNR {out['inversion_psnr']:.2f} dB")
            print_note(job.src, out["note"])
            return None
        images = [load_image(j.src) for j in batch]
        animated = [animation_note(img) and f"{job.src}: {animation_note(img)}" for job, img in zip(batch, images)]
        out = pipe(images, args.prompt, method=args.method, strength=args.strength, steps=args.steps,
                   refine_steps=args.refine_steps, refine_texture=args.refine_texture,
                   labels=[str(j.src) for j in batch], faces=args.faces)
        for k, (job, img, psnr, note) in enumerate(zip(batch, out.images, out.inversion_psnr, out.notes)):
            note = "; ".join(n for n in (animated[k], note) if n)
            meta = {**base, "input": str(job.src), "inversion_psnr_db": round(psnr, 3), "note": note}
            if out.faces is not None:
                meta["faces"] = [r.to_json() for r in out.faces[k]]
            write_with_meta(job.dst, meta, lambda img=img, job=job: save_image(img, job.dst))
            count = "" if out.faces is None else f"{len(out.faces[k])} face(s), "
            shown = f" ({note.replace(f'{job.src}: ', '')})" if note else ""
            print(f"{job.src}: {count}inversion PSNR {psnr:.2f} dB{shown}")

    # What an existing output's sidecar must record to count as done: the edit's settings (absent: None),
    # not the input policy's wording.
    settings = {**dict.fromkeys(("steps", "refine_steps", "refine_texture", "faces_mode")),
                **{k: v for k, v in base.items() if k != "input_policy"}}
    r = batch_run.run(process, args, settings=lambda job: settings)
    summary = (f"edited {r['done']} file(s) into {args.output} ({args.method}, strength {args.strength:g}); "
               f"{r['skipped']} already done, {r['failed']} failed"
               + (f" (see {batch_run.report})" if r["failed"] else ""))
    return finish(r, summary, batch_run.world_size)
