"""Face pipeline cost per frame on the CPU: MTCNN detection, FFHQ alignment to the generator's size,
and paste-back of the crop (generation/faces).

    .venv/bin/python benchmarks/bench_faces.py                     # a 1024x1024 frame, 1024 px crop, 1 thread
    .venv/bin/python benchmarks/bench_faces.py --frame 1920x1080 --size 1024 --threads 2 --repeats 5
    .venv/bin/python benchmarks/bench_faces.py --smoke   # a check that it runs: a 256 px frame and crop, 1 repeat
    .venv/bin/python benchmarks/bench_faces.py --edit --repeats 1   # and the edit of the crop, for comparison

With ``--edit``, the edit itself is timed too: one pass of ``EditPipeline`` (method ``mapper``:
encoder, HD-VILA guide, mapper, generator twice) on the aligned crop, with an FFHQ-shaped generator
at ``--size`` (config F: 512-d z and w, channel_base 32768, channel_max 512; randomly initialised,
since the time does not depend on the weights), the bundled ``hdvila-mini`` and a fresh encoder and
mapper for them; and the whole ``EditPipeline(..., faces="largest")`` call on the frame (detection,
alignment, that edit, paste-back). ``--smoke`` uses a narrow generator (channel_max 32).

The frame is scikit-image's ``astronaut`` photo (512 px) resized to the frame's height (bicubic) and
centred on a grey canvas of the frame's width: at 1024 px its face has about 84 px between the eyes.
Each step is timed ``--repeats`` times after one warm-up (which loads the detector, reported on its
own); the table gives the median. Detection runs on the CPU always; alignment and paste-back run on
``--device``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

from generation.faces import align_face, detect_faces, paste_back
from hdvila.errors import UserError
from hdvila.tensors import uint8_to_unit


def make_frame(width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3]: the astronaut photo scaled to the frame's height, centred on grey."""
    from skimage.data import astronaut

    side = min(width, height)
    photo = np.asarray(Image.fromarray(astronaut()).resize((side, side), Image.BICUBIC))
    frame = np.full((height, width, 3), 128, np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    frame[top:top + side, left:left + side] = photo
    return frame


def timed(fn, repeats: int, sync) -> tuple[float, object]:
    """Median wall ms of ``repeats`` calls of ``fn`` (and its last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frame", default="1024x1024", help="frame WIDTHxHEIGHT in px")
    p.add_argument("--size", type=int, default=1024, help="aligned crop side (the generator's resolution)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="for alignment and paste-back (detection stays on the CPU)")
    p.add_argument("--edit", action="store_true", help="also time the edit of the crop (module docstring)")
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): a 256 px frame and crop, 1 repeat, a narrow generator")
    a = p.parse_args(argv)
    channel_max = 512
    if a.smoke:
        a.frame, a.size, a.repeats, a.threads, a.edit, channel_max = "256x256", 256, 1, 1, True, 32
    torch.set_num_threads(a.threads)
    width, height = (int(v) for v in a.frame.lower().split("x"))
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    frame = make_frame(width, height)
    image = uint8_to_unit(torch.from_numpy(frame).permute(2, 0, 1)).to(device)

    try:
        t0 = time.perf_counter()
        faces = detect_faces(frame)  # warm-up: loads MTCNN
        first_ms = (time.perf_counter() - t0) * 1000
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    face = faces[0]
    align_face(image, face, a.size)
    detect_ms, _ = timed(lambda: detect_faces(frame), a.repeats, sync)
    align_ms, aligned = timed(lambda: align_face(image, face, a.size), a.repeats, sync)
    paste_ms, _ = timed(lambda: paste_back(image, aligned), a.repeats, sync)

    face_ms = detect_ms + align_ms + paste_ms
    rows = [("detect (MTCNN, CPU)", detect_ms), (f"align ({a.size} px crop)", align_ms), ("paste back", paste_ms),
            ("total", face_ms)]
    if a.edit:
        pipe = build_edit_pipeline(a.size, channel_max, device)
        crop = aligned.crop[None]
        pipe(crop, PROMPT, output_type="pt")  # warm-up
        edit_ms, _ = timed(lambda: pipe(crop, PROMPT, output_type="pt"), a.repeats, sync)
        whole_ms, _ = timed(lambda: pipe(image, PROMPT, output_type="pt", faces="largest"), a.repeats, sync)
        rows += [(f"edit of the crop (mapper, one pass, {a.size} px generator, channel_max {channel_max})", edit_ms),
                 ("whole call: EditPipeline(frame, faces='largest')", whole_ms)]

    print(f"frame {width}x{height} px (face {face.eye_distance:.0f} px between the eyes, crop square "
          f"{aligned.side:.0f} px), crop {a.size} px, {torch.get_num_threads()} thread(s), align/paste on {device}, "
          f"median of {a.repeats}\n")
    print("| step | ms per frame |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    print(f"\nfirst detection, with loading the detector: {first_ms:.0f} ms")
    if a.edit:
        print(f"face steps (detect + align + paste back) / edit of the crop: {face_ms / edit_ms:.1%}")


PROMPT = "a smiling face"


def build_edit_pipeline(size: int, channel_max: int, device: torch.device):
    """``EditPipeline.untrained`` on an FFHQ-shaped generator at ``size`` px (config F widths capped at
    ``channel_max``) and the bundled ``hdvila-mini``, in eval mode on ``device``."""
    from generation.editing.pipeline_edit import EditPipeline
    from generation.stylegan2.config import StyleGAN2Config
    from generation.stylegan2.networks import Generator
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import bundled

    torch.manual_seed(0)
    G = Generator(StyleGAN2Config(img_resolution=size, channel_max=channel_max)).eval()
    pipe = EditPipeline.untrained(G, HDVILAModel.from_pretrained(bundled("hdvila-mini")).eval()).to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


if __name__ == "__main__":
    main()
