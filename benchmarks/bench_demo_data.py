"""Demo-domain rendering throughput (items/s), single process.

    .venv/bin/python benchmarks/bench_demo_data.py
    .venv/bin/python benchmarks/bench_demo_data.py --smoke   # a check that it runs: 2 items a row, rates not meaningful
"""

import argparse
import time

import torch

from hdvila.demo import DemoImageDataset, DemoVideoDataset


def rate(fn, n):
    fn(0)
    t = time.perf_counter()
    for i in range(1, n + 1):
        fn(i)
    return n / (time.perf_counter() - t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="2 items per row (a check that it runs; seconds)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    n = (lambda full: 2) if a.smoke else (lambda full: full)
    img64 = DemoImageDataset("train", 10**6, resolution=64)
    img256 = DemoImageDataset("train", 10**6, resolution=256)
    vid = DemoVideoDataset("train", 10**6)
    rows = [
        ("image 64 px", rate(lambda i: img64[i], n(400))),
        ("image 256 px", rate(lambda i: img256[i], n(100))),
        ("video 32 x 128 px (all frames)", rate(lambda i: vid[i], n(20))),
        ("video 7 of 32 frames x 128 px (one hybrid clip)",
         rate(lambda i: vid.get(i, frames=[4, 8, 12, 16, 20, 24, 28]), n(60))),
    ]
    print("| item | items/s (1 thread) |\n|---|---|")
    for name, r in rows:
        print(f"| {name} | {r:.1f} |")


if __name__ == "__main__":
    main()
