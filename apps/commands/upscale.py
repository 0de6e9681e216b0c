"""``hdvila upscale INPUT OUTPUT [--prompt "..."] [--captions FILE]``: text-conditioned super-resolution
of an image, a folder of images and videos (recursive, relative paths kept) or a video
(:class:`generation.superres.pipeline_sr.SRPipeline`).

Input policy: a frame whose side is not the model's LR size (16 px for the bundled x4 model) is
centre-cropped to a square and resized to it, with a note on stderr; a frame larger than the model's
output (64 px) is refused. The caption of a file comes from ``--captions`` (jsonl ``{"image", "caption"}`` or a
CSV with image and caption columns, paths relative to that file), else ``--prompt``, else none (the
model then upscales without text). Images are written as PNG, videos as mp4 at the source frame
rate with the source's audio track (copied, or re-encoded to AAC; cut to the frames written). Each output
gets ``OUTPUT.json``, a record of how it was made. A rerun skips the outputs made with the same
scale and caption (``--overwrite`` redoes them); one made otherwise is kept and reported as an error,
one with no record is kept with a warning. Bad inputs go to the errors report beside the outputs and
make the exit status 1.

Faces (``--faces largest|all``, for a model trained on faces and real photos): each image's faces
are detected, aligned as FFHQ at the model's LR size and super-resolved; the whole frame is enlarged
bicubically by the same factor and the faces pasted into it (the frame is not held to the model's
sizes; the enlargement may have at most 40 MP). ``OUTPUT.json`` beside each output records each
face's box, landmarks and transform (in the input, and where it went in the output). A video follows
one tracked face (smoothed landmarks), pasted into every enlarged frame (the sound track kept, as
without ``--faces``). A file without a face goes to the errors report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hdvila.errors import UserError

#: Output paths, checked writable before run (apps/cli.py).
OUTPUTS = ("output",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from apps.batch import add_batch_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split("\n\n", 1)[1]
    parser.add_argument("input", help="an image, a video, or a folder of them")
    parser.add_argument("output", help="output file (for a file) or folder")
    parser.add_argument("--prompt", default=None, help="caption for every input, e.g. \"a red star with stripes\"")
    parser.add_argument("--captions", default=None, metavar="FILE", help="per-file captions (jsonl or csv)")
    parser.add_argument("--model", default=None,
                        help="SR pipeline folder (default: the bundled checkpoints/sr-demo64-x4)")
    parser.add_argument("--generator", default=None, help="replace the pipeline's generator (model folder or .pkl); "
                        "it must be the one the SR model was trained with")
    parser.add_argument("--hdvila", default=None, help="replace the pipeline's HD-VILA model folder")
    parser.add_argument("--scale", type=int, default=None,
                        help="upscaling factor; must match the model (default: the model's)")
    parser.add_argument("--faces", choices=("largest", "all"), default=None,
                        help="super-resolve the faces of real photos: detect, align as FFHQ, upscale, paste into "
                             "the bicubic enlargement of the whole frame (largest: the largest face; all: every "
                             "face; a video follows one face)")
    add_batch_arguments(parser, batch_size=16, batch_help="frames per forward pass",
                        quiet_help="no progress bars (input-policy notes and errors are still printed)")


def caption_lookup(path: str | None):
    """A function job -> caption or None, from a captions file (matched by resolved path, else by
    relative path, else by file name)."""
    if path is None:
        return lambda job: None
    from generation.superres.data import read_caption_rows

    rows = read_caption_rows(path)
    by_path = {p.resolve(): c for p, c in rows}
    by_rel = {p.relative_to(Path(path).parent).as_posix(): c for p, c in rows}
    by_name = {p.name: c for p, c in rows}
    return lambda job: by_path.get(job.src.resolve(), by_rel.get(job.rel, by_name.get(job.src.name)))


def run(args: argparse.Namespace) -> int:
    from apps.batch import finish, print_note, start_batch
    from apps.pipelines import load_sr_pipeline, upscale_video

    if args.prompt is not None and not args.prompt.strip():
        raise UserError("--prompt is empty; give a caption, or leave the option out to upscale without text.")
    batch_run = start_batch(args)
    jobs = batch_run.jobs
    caption = caption_lookup(args.captions)
    if args.captions and not any(caption(job) for job in jobs):
        print(f"warning: --captions {args.captions} names none of the {len(jobs)} input file(s) (matched by path, "
              f"path relative to the file, or name); they are upscaled "
              + ("with --prompt." if args.prompt else "without a caption."), file=sys.stderr)
    pipe = load_sr_pipeline(args.model, args.generator, args.hdvila, batch_run.device)
    pipe.set_progress_bar_config(disable=True)
    scale = pipe.sr_model.config.scale if args.scale is None else args.scale
    pipe.check_inputs([None], None, scale)  # a --scale the model was not trained for fails before any file
    base = {}
    if args.faces:
        from generation.faces.detect import load_detector
        from generation.faces.pipeline import FACE_POLICY

        load_detector()  # a missing detector fails the run once, before any file
        base = {"scale": scale, "faces_mode": args.faces, "input_policy": FACE_POLICY.format(
            r=pipe.lr_resolution, task=f"super-resolved to {pipe.out_resolution}x{pipe.out_resolution}",
            scaled=f" times {scale} (bicubic)")}

    def prompt_of(job):
        return caption(job) or args.prompt

    def settings(job):  # what an existing output's sidecar must record to count as done
        return {"scale": scale, "caption": prompt_of(job), "faces_mode": args.faces}

    def process(batch):
        from apps.batch import write_with_meta
        from hdvila.imageio import animation_note, load_image, save_image

        if batch[0].kind == "video":
            job = batch[0]
            meta = {**settings(job), **base, "input": str(job.src)}
            if args.faces:
                r = upscale_video(pipe, job.src, job.dst, prompt_of(job), scale=scale, batch_size=args.batch_size,
                                  max_frames=args.max_frames, faces=args.faces,
                                  write=lambda r, save: write_with_meta(job.dst, {
                                      **meta, "frames": r["frames"], "faces": r["faces"].to_json()}, save))
                print_note(job.src, r["note"])
                return None
            note = upscale_video(pipe, job.src, job.dst, prompt_of(job), scale=scale, batch_size=args.batch_size,
                                 max_frames=args.max_frames, write=lambda note, save: write_with_meta(job.dst, {
                                     **meta, "note": note or ""}, save))
            print_note(job.src, note)
            return None
        images = [load_image(j.src) for j in batch]
        for job, img in zip(batch, images):
            print_note(job.src, animation_note(img))
        out = pipe(images, prompt=[prompt_of(j) for j in batch], scale=scale, labels=[str(j.src) for j in batch],
                   faces=args.faces)
        for k, (job, img, note) in enumerate(zip(batch, out.images, out.notes)):
            if note:
                print(f"note: {note}", file=sys.stderr)
            meta = {**settings(job), **base, "input": str(job.src)}
            if out.faces is None:
                write_with_meta(job.dst, meta, lambda img=img, job=job: save_image(img, job.dst))
                continue
            meta["faces"] = [r.to_json() for r in out.faces[k]]
            write_with_meta(job.dst, meta, lambda img=img, job=job: save_image(img, job.dst))
            print(f"{job.src}: {len(out.faces[k])} face(s) super-resolved, {img.size[0]}x{img.size[1]} px")

    r = batch_run.run(process, args, settings=settings)
    summary = (f"upscaled {r['done']} file(s) x{scale} into {args.output}; {r['skipped']} already done, "
               f"{r['failed']} failed" + (f" (see {batch_run.report})" if r["failed"] else ""))
    return finish(r, summary, batch_run.world_size)
