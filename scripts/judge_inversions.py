"""Can the generator draw what the judge reads confidently? The judge on projections of renders.

Held-out test renders (seed 9, as in ``scripts/eval_stylegan2_default.py``) are projected into the
generator's W (or W+) space with :func:`generation.stylegan2.projector.project_batch`, by default with
its noise maps left at their constant values (``--optimize_noise`` frees them). The judge then reads the
reconstructions and the renders. If the reconstructions are read confidently and as the same classes,
the generator can draw those images, and low confidence on its samples comes from where its latent
distribution puts its mass (e.g. on blends between shapes), not from what it can draw.

    .venv/bin/python scripts/judge_inversions.py checkpoints/stylegan2-demo64 --images 100 --space w
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", help="a generator folder (config.json + model.safetensors)")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--space", choices=("w", "w+"), default="w")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=25, help="images projected together")
    p.add_argument("--optimize_noise", action="store_true", help="also optimise the noise maps")
    p.add_argument("--threshold", type=float, default=0.9)
    a = p.parse_args(argv)

    import torch

    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.projector import project_batch
    from hdvila.demo import DemoImageDataset
    from hdvila.judge import ATTRIBUTE_NAMES, load_judge
    from hdvila.judge.evaluate import confident_on_every_attribute, judge_images

    G = load_stylegan2(a.generator).eval()
    test = DemoImageDataset("test", a.images, resolution=G.img_resolution, seed=9)
    targets = torch.stack([test[i]["image"] for i in range(a.images)])
    recons, psnrs = [], []
    for start in range(0, a.images, a.batch):
        idx = list(range(start, min(start + a.batch, a.images)))
        results = project_batch(G, targets[idx], space=a.space, steps=a.steps, seeds=idx,
                                optimize_noise=a.optimize_noise)
        recons += [r.reconstruction[0] for r in results]
        psnrs += [r.psnr for r in results]
        print(f"projected {idx[-1] + 1}/{a.images}", flush=True)
    recon = torch.stack(recons)
    judge = load_judge()
    pr, pt = judge_images(judge, recon), judge_images(judge, targets)

    same_all = torch.ones(a.images, dtype=torch.bool)
    print(f"\n{a.generator}: {a.images} test renders projected into {a.space} ({a.steps} steps, noise "
          f"{'optimised' if a.optimize_noise else 'constant'}), PSNR mean {sum(psnrs) / len(psnrs):.2f} dB")
    print("| attribute | renders confident | reconstructions confident | reconstruction read as the render's class |")
    print("|---|---|---|---|")
    for k in ATTRIBUTE_NAMES:
        same = pr[k][0] == pt[k][0]
        same_all &= same
        print(f"| {k} | {float((pt[k][1] > a.threshold).float().mean()):.0%} | "
              f"{float((pr[k][1] > a.threshold).float().mean()):.0%} | {float(same.float().mean()):.0%} |")
    every_t, every_r = confident_on_every_attribute(pt, a.threshold), confident_on_every_attribute(pr, a.threshold)
    print(f"| every attribute | {float(every_t.float().mean()):.0%} | {float(every_r.float().mean()):.0%} | "
          f"{float(same_all.float().mean()):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
