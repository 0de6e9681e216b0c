"""StyleGAN2 generator throughput and custom-op speed, reference vs compiled paths.

    .venv/bin/python benchmarks/bench_stylegan2.py                 # full run
    .venv/bin/python benchmarks/bench_stylegan2.py --repeats 2     # quicker
    .venv/bin/python benchmarks/bench_stylegan2.py --smoke         # a check that it runs: 64 px, 1 repeat,
                                                                   # 1 thread, 'ref' only (no build)

Generator configs (z = w = 512, 8 mapping layers, noise 'const', truncation 1, eval mode):
  64 px: channel_base 8192, channel_max 256 (a small generator: 256 channels up to 32 px, 128 at 64 px);
  256 px and 1024 px: config-f channels (channel_base 32768, channel_max 512).
Paths: 'ref' = plain-PyTorch ops; 'compiled' = the C++ kernels on CPU (CUDA kernels on a GPU).

FLOP/s: the generator's convolution and matmul FLOPs (torch.utils.flop_counter; the FIR filtering
and bias/activation work is not counted, so this is the useful dense work) divided by the time,
as a share of the same machine's fp32 matmul FLOP/s measured in the same run.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import statistics
import sys
import time
from collections.abc import Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from generation.stylegan2 import Generator, StyleGAN2Config
from generation.stylegan2.ops import bias_act, build_extension, downsample2d, setup_filter, upfirdn2d, upsample2d

CONFIGS = {
    64: dict(img_resolution=64, channel_base=8192, channel_max=256),
    256: dict(img_resolution=256),
    1024: dict(img_resolution=1024),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Median seconds per call of each function, calls interleaved (A B A B ...) so that load
    from other processes on a shared machine hits all of them alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t = time.perf_counter()
            fn()
            sync(device)
            acc.append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def matmul_flops(device: torch.device, repeats: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n ** 3 / timed([lambda: a @ b], device, max(repeats, 5), warmup=2)[0]


def generator_rows(device: torch.device, resolutions: list[int], batch: int, repeats: int, impls: list[str],
                   peak: float) -> Iterator[tuple]:
    """One row per resolution and impl, yielded as measured (a stall shows where it is)."""
    for res in resolutions:
        torch.manual_seed(0)
        G = Generator(StyleGAN2Config(**CONFIGS[res])).eval().to(device)
        z = torch.randn(batch, G.z_dim, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            G(z)
        flops = counter.get_total_flops() / batch
        for impl, sec in zip(impls, timed([_runner(G, z, i) for i in impls], device, repeats)):
            sec /= batch
            yield (res, _describe(CONFIGS[res]), impl, batch, sec * 1e3, 1 / sec, flops / 1e9,
                   flops / sec / 1e9, 100 * flops / sec / peak)


def _runner(G: Generator, z: torch.Tensor, impl: str):
    def run():
        with torch.no_grad():
            _forward(G, z, impl)
    return run


def _forward(G: Generator, z: torch.Tensor, impl: str) -> torch.Tensor:
    """Run G with every op forced to ``impl`` (the ops read HDVILA_OPS_IMPL for 'auto')."""
    old = os.environ.get("HDVILA_OPS_IMPL")
    os.environ["HDVILA_OPS_IMPL"] = impl
    try:
        return G(z)
    finally:
        if old is None:
            del os.environ["HDVILA_OPS_IMPL"]
        else:
            os.environ["HDVILA_OPS_IMPL"] = old


def _describe(cfg: dict) -> str:
    base, cmax = cfg.get("channel_base", 32768), cfg.get("channel_max", 512)
    return "config-f" if (base, cmax) == (32768, 512) else f"base {base}, max {cmax}"


def op_rows(device: torch.device, repeats: int, impls: list[str]) -> Iterator[tuple]:
    """One row per op case, yielded as measured: (name, shape, {impl: fwd ms}, {impl: fwd+bwd ms})."""
    f = setup_filter([1, 3, 3, 1], device=device)
    b256 = torch.randn(256, device=device)
    cases = [
        ("upsample2d (skip image)", (4, 3, 128, 128), lambda x, i: upsample2d(x, f, impl=i)),
        ("FIR after transposed conv", (1, 1024, 65, 65), lambda x, i: upfirdn2d(x, f, padding=1, gain=4, impl=i)),
        ("FIR before strided conv (D)", (4, 128, 64, 64), lambda x, i: upfirdn2d(x, f, padding=2, impl=i)),
        ("downsample2d (D skip)", (4, 128, 64, 64), lambda x, i: downsample2d(x, f, impl=i)),
        ("bias_act lrelu", (4, 256, 64, 64), lambda x, i: bias_act(x, b256, act="lrelu", impl=i)),
        ("bias_act lrelu + clamp 256", (4, 256, 64, 64),
         lambda x, i: bias_act(x, b256, act="lrelu", clamp=256, impl=i)),
    ]
    for name, shape, fn in cases:
        x = torch.randn(*shape, device=device)
        xg = x.clone().requires_grad_(True)

        def fwd_bwd(i, fn=fn, xg=xg):
            fn(xg, i).square().sum().backward()

        fwd = timed([lambda i=i, fn=fn, x=x: fn(x, i) for i in impls], device, repeats)
        both = timed([lambda i=i: fwd_bwd(i) for i in impls], device, repeats)
        yield (name, "x".join(map(str, shape)), {i: t * 1e3 for i, t in zip(impls, fwd)},
               {i: t * 1e3 for i, t in zip(impls, both)})


def _op_cells(ms: dict[str, float]) -> str:
    """'ref ms | compiled ms | speed-up' cells ('-' for a path not measured)."""
    ref, comp = ms.get("ref"), ms.get("compiled")
    cell = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    return f"{cell(ref)} | {cell(comp)} | " + (f"{ref / comp:.1f}x" if ref is not None and comp is not None else "-")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256, 1024], choices=sorted(CONFIGS))
    parser.add_argument("--batch", type=int, default=None, help="default: 1 on CPU, 8 on CUDA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--watchdog", type=float, default=0,
                        help="every S seconds, print every thread's Python stack to stderr (0: off), to see where a "
                             "run that is stopped by a timeout was")
    parser.add_argument("--impls", default="ref,compiled",
                        help="comma-separated op paths to time: ref, compiled (default both; 'ref' builds nothing)")
    parser.add_argument("--smoke", action="store_true",
                        help="a check that it runs (seconds): 64 px, batch 1, 1 repeat, 1 thread, 'ref' only, a "
                             "512^3 matmul; not a measurement")
    args = parser.parse_args(argv)
    matmul_n = 2048
    if args.smoke:
        args.device, args.resolutions, args.batch, args.repeats, args.threads = "cpu", [64], 1, 1, 1
        args.impls, matmul_n = "ref", 512
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    if not impls or set(impls) - {"ref", "compiled"}:
        parser.error(f"--impls takes ref and/or compiled, got {args.impls!r}")
    if args.watchdog > 0:
        faulthandler.dump_traceback_later(args.watchdog, repeat=True, file=sys.stderr)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (8 if device.type == "cuda" else 1)

    build = "not needed ('ref' only)"
    if "compiled" in impls:
        t = time.perf_counter()
        build_extension(device.type)  # fail loudly here rather than silently timing the fallback
        build = f"{time.perf_counter() - t:.1f} s"
    peak = matmul_flops(device, args.repeats, matmul_n)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; extension build/load {build}; "
          f"fp32 matmul {matmul_n}^3: {peak / 1e9:.1f} GFLOP/s\n")

    print("| op | shape | ref fwd ms | compiled fwd ms | speedup | ref fwd+bwd ms | compiled fwd+bwd ms | speedup |")
    print("|---|---|---|---|---|---|---|---|")
    for r in op_rows(device, args.repeats, impls):
        print(f"| {r[0]} | {r[1]} | {_op_cells(r[2])} | {_op_cells(r[3])} |", flush=True)

    print("\n| px | channels | ops | batch | ms/img | img/s | GFLOP/img | GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in generator_rows(device, args.resolutions, batch, args.repeats, impls, peak):
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.1f} | {r[5]:.2f} | {r[6]:.1f} | {r[7]:.1f} "
              f"| {r[8]:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
