"""Where a generator's samples lose the judge's confidence, and what they look like.

For ``--samples`` images of a StyleGAN2 generator (seeds 0..N-1, truncation 1.0, constant noise, as in
``scripts/judge_curve.py``), the samples the judge reads with confidence <= 0.9 on each attribute are
counted, broken down by the judge's reading of size, shape and pattern (so "small stars fail" shows
as such), and the first 48 samples unconfident on ``--attribute`` are written as a PNG grid.

    .venv/bin/python scripts/judge_failures.py runs/sg2-v7g2-ema/step-74000 --samples 500 \\
        --attribute shape --out docs/images/stylegan2_unconfident_shape.png
    .venv/bin/python scripts/judge_failures.py real --samples 500 --out /tmp/real_unconfident.png
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", help="a generator folder (config.json + model.safetensors), or 'real' for as many "
                                     "64 px training renders (the ceiling)")
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--attribute", default="shape", help="whose unconfident samples go in the grid")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--out", required=True, help="PNG grid of unconfident samples")
    a = p.parse_args(argv)

    import torch

    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.metrics import generator_samples, real_images
    from hdvila.demo.attributes import ATTRIBUTES
    from hdvila.judge import ATTRIBUTE_NAMES, load_judge
    from hdvila.judge.evaluate import confident_on_every_attribute, judge_images
    from hdvila.tensors import image_grid, to_pil

    if a.attribute not in ATTRIBUTE_NAMES:
        p.error(f"--attribute must be one of {', '.join(ATTRIBUTE_NAMES)}")
    judge = load_judge()
    if a.generator == "real":
        fake = real_images(a.samples, 64)
    else:
        G = load_stylegan2(a.generator).eval()
        with torch.no_grad():
            fake = generator_samples(G, range(a.samples))
    preds = judge_images(judge, fake)
    names = {k: list(ATTRIBUTES[k]) for k in ATTRIBUTE_NAMES}
    every = confident_on_every_attribute(preds, a.threshold)
    print(f"{a.generator}: {int(every.sum())} of {a.samples} samples confident on every attribute")
    for k in ATTRIBUTE_NAMES:
        bad = preds[k][1] <= a.threshold
        print(f"{k}: {int(bad.sum())} unconfident")
        for by in ("size", "shape", "pattern"):
            cls = preds[by][0]
            parts = [f"{names[by][c]} {int((bad & (cls == c)).sum())}/{int((cls == c).sum())}"
                     for c in range(len(names[by]))]
            print(f"    by judged {by}: " + ", ".join(parts))
    idx = (preds[a.attribute][1] <= a.threshold).nonzero().flatten()[:48]
    if len(idx):
        to_pil(image_grid(fake[idx], nrow=8)).save(a.out)
        print(f"wrote {len(idx)} samples unconfident on {a.attribute} to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
