"""Evidence for the bundled 64 px StyleGAN2 generator on the demo domain.

    .venv/bin/python benchmarks/quality/eval_stylegan2_default.py                    # checkpoints/stylegan2-demo64
    .venv/bin/python benchmarks/quality/eval_stylegan2_default.py --generator runs/stylegan2-demo64/generator
    .venv/bin/python benchmarks/quality/eval_stylegan2_default.py --smoke   # a check that it runs: 16 samples,
                                                                            # 2 inversions of 2 steps, 1 thread,
                                                                            # grid to a temp dir

1. Samples: ``--samples`` images at truncation 1.0 (noise 'const', seeds 0..N-1) are read by the judge
   (the independent referee: it plays no part in training or checkpoint choice). Reported: the share
   whose every attribute is read with confidence > 0.9, and the total-variation distance between the
   judged attribute distribution and the training distribution (the judge's labels of the same number
   of training renders), per attribute. The training renders' own confident share is the ceiling.
   Also FD-HDVILA (:mod:`generation.stylegan2.metrics`), with the real-vs-real floor.
2. Inversion: ``--invert`` held-out test renders (unseen attribute combinations) projected into W+
   (``--spaces w+,w`` adds W) with :func:`generation.stylegan2.projector.project_batch`, ``--invert_batch``
   images at a time (image i with seed i: the same result as projecting it alone); PSNR (RGB, 8-bit) and
   seconds per image.
3. A sample grid PNG (``--grid``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

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
from generation.stylegan2.projector import project_batch
from hdvila.demo.dataset import DemoImageDataset
from hdvila.imageio import save_image
from hdvila.judge import ATTRIBUTE_NAMES, load_judge
from hdvila.judge.evaluate import sample_report
from hdvila.paths import bundled
from hdvila.tensors import image_grid


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=str(bundled("stylegan2-demo64")))
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--invert", type=int, default=100)
    p.add_argument("--invert_steps", type=int, default=300)
    p.add_argument("--invert_batch", type=int, default=25, help="images projected together (default 25)")
    p.add_argument("--spaces", default="w+", help="comma-separated latent spaces to invert into (w+, w)")
    p.add_argument("--grid", default="docs/images/stylegan2_demo64_samples.png")
    p.add_argument("--json", default=None)
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): 16 samples, 2 test renders inverted with 2 steps, 1 thread, "
                        "the reference ops, the grid to a temporary folder and no --json; the numbers mean nothing")
    a = p.parse_args(argv)
    if a.invert_batch < 1:
        p.error("--invert_batch must be >= 1")
    if a.smoke:
        os.environ["HDVILA_OPS_IMPL"] = "ref"  # nothing to compile
        torch.set_num_threads(1)
        a.samples, a.invert, a.invert_steps, a.invert_batch, a.json = 16, 2, 2, 2, None
        with tempfile.TemporaryDirectory(prefix="eval-stylegan2-smoke-") as tmp:
            a.grid = str(Path(tmp) / "samples.png")
            evaluate(a)
    else:
        evaluate(a)


def evaluate(a: argparse.Namespace) -> None:
    G = load_stylegan2(a.generator).eval()
    judge = load_judge()
    res: dict = {"generator": a.generator}

    t0 = time.perf_counter()
    fake = generator_samples(G, range(a.samples))
    res["sample_s_per_image"] = (time.perf_counter() - t0) / a.samples
    save_image(image_grid(fake[:64], nrow=8), a.grid)
    real = real_images(a.samples, G.img_resolution)
    feats = load_feature_model()
    real_f = image_features(feats, real)
    res["fd_hdvila"] = frechet_distance(image_features(feats, fake), real_f)
    res["fd_hdvila_real_floor"] = frechet_distance(
        image_features(feats, real_images(a.samples, G.img_resolution, seed=REAL_SEED + 1)), real_f)
    res.update(sample_report(judge, fake, real))

    spaces = [x.strip() for x in a.spaces.split(",") if x.strip()]
    inv = {s: [] for s in spaces}
    times = {s: [] for s in spaces}
    test = DemoImageDataset("test", a.invert, resolution=G.img_resolution, seed=9)
    loss_name = ""
    for start in range(0, a.invert, a.invert_batch):
        idx = list(range(start, min(start + a.invert_batch, a.invert)))
        targets = torch.stack([test[i]["image"] for i in idx])
        for space in spaces:
            results = project_batch(G, targets, space=space, steps=a.invert_steps, seeds=idx)
            inv[space] += [r.psnr for r in results]
            times[space] += [r.time_s for r in results]
            loss_name = results[0].loss
        print(f"invert {idx[-1] + 1}/{a.invert}: " + ", ".join(
            f"{s.upper()} {statistics.mean(inv[s][-len(idx):]):.2f} dB (batch mean)" for s in spaces), flush=True)
    if a.invert:
        res["inversion"] = {s: {"psnr_mean": statistics.mean(inv[s]), "psnr_median": statistics.median(inv[s]),
                                "s_per_image": statistics.mean(times[s]), "loss": loss_name,
                                "batch": a.invert_batch} for s in inv}
    print(f"\n| metric ({a.samples} samples, truncation 1.0) | value |\n|---|---|")
    print(f"| judge confidence > 0.9 on every attribute | {100 * res['confident_all_attributes']:.1f}% "
          f"(training renders: {100 * res['real_confident_all_attributes']:.1f}%) |")
    for k in ATTRIBUTE_NAMES:
        print(f"| {k}: confident share (training renders) / TV distance to training | "
              f"{100 * res['confident_per_attribute'][k]:.1f}% ({100 * res['real_confident_per_attribute'][k]:.1f}%)"
              f" / {res['tv_distance'][k]:.3f} |")
    print(f"| FD-HDVILA (real-vs-real floor) | {res['fd_hdvila']:.4f} ({res['fd_hdvila_real_floor']:.4f}) |")
    print("\n| attribute | class shares, generated / training renders (%) |\n|---|---|")
    for k, shares in res["class_shares"].items():
        print(f"| {k} | " + ", ".join(f"{name} {100 * g:.0f}/{100 * r:.0f}" for name, (g, r) in shares.items()) + " |")
    if a.invert:
        print(f"\n| inversion of {a.invert} test renders ({a.invert_steps} steps) | PSNR mean (median) | s/image |"
              "\n|---|---|---|")
        for s, v in res["inversion"].items():
            print(f"| {s.upper()} | {v['psnr_mean']:.2f} dB ({v['psnr_median']:.2f}) | {v['s_per_image']:.1f} |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
