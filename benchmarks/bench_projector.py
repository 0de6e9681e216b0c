"""Inversion speed: seconds per image of the StyleGAN2 projector, one image at a time vs batched.

    .venv/bin/python benchmarks/bench_projector.py                       # bundled 64 px generator
    .venv/bin/python benchmarks/bench_projector.py --generator PATH --batches 1,4,16 --steps 50
    .venv/bin/python benchmarks/bench_projector.py --smoke   # a check that it runs: batches 1,2, 2 steps, 1 thread,
                                                             # reference ops

For each batch size B, projects the same B test renders (demo domain, unseen attribute combinations)
with ``project_batch`` (W+, the default losses) and reports wall seconds per image and the speed-up
over B = 1 measured in the same run, alternating the sizes ``--repeats`` times (these machines are
noisy, so compare the ratios, not the absolute times). Results depend on ``--steps`` only linearly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from generation.stylegan2.convert import load_stylegan2
from generation.stylegan2.projector import project_batch
from hdvila.demo.dataset import DemoImageDataset
from hdvila.device import get_device
from hdvila.paths import bundled


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=str(bundled("stylegan2-demo64")))
    p.add_argument("--batches", default="1,5,25", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): batches 1,2, 2 steps, 1 repeat, 1 thread, the reference ops")
    a = p.parse_args(argv)
    if a.smoke:
        os.environ["HDVILA_OPS_IMPL"] = "ref"  # nothing to compile
        a.batches, a.steps, a.repeats, a.threads = "1,2", 2, 1, 1
    if a.threads:
        torch.set_num_threads(a.threads)
    device = get_device(a.device)
    batches = [int(b) for b in a.batches.split(",")]
    G = load_stylegan2(a.generator).eval()
    test = DemoImageDataset("test", max(batches), resolution=G.img_resolution, seed=9)
    targets = torch.stack([test[i]["image"] for i in range(max(batches))])
    project_batch(G, targets[:1], steps=2, w_avg_samples=1000, device=device)  # warm-up

    times: dict[int, list[float]] = {b: [] for b in batches}
    psnrs: dict[int, float] = {}
    for _ in range(a.repeats):
        for b in batches:
            t0 = time.perf_counter()
            results = project_batch(G, targets[:b], steps=a.steps, seeds=list(range(b)), device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[b].append((time.perf_counter() - t0) / b)
            psnrs[b] = statistics.mean(r.psnr for r in results)
    base = statistics.median(times[batches[0]])
    print(f"generator {a.generator}, {G.img_resolution} px, {a.steps} steps, W+, device {device}, "
          f"{torch.get_num_threads()} thread(s)\n")
    print(f"| batch | s/image ({a.steps} steps) | speed-up vs batch {batches[0]} | mean PSNR |\n|---|---|---|---|")
    for b in batches:
        t = statistics.median(times[b])
        print(f"| {b} | {t:.3f} | {base / t:.2f}x | {psnrs[b]:.2f} dB |")


if __name__ == "__main__":
    main()
