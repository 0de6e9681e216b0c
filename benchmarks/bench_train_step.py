"""StyleGAN2 training-step speed by precision and memory format: float32 against bfloat16
autocast, NCHW against channels-last (CPU or CUDA).

    .venv/bin/python benchmarks/bench_train_step.py --threads 2            # the bundled 64 px config
    .venv/bin/python benchmarks/bench_train_step.py --device cuda --batch 32
    .venv/bin/python benchmarks/bench_train_step.py --smoke    # a check that it runs: batch 2, 1 run, no warm-up,
                                                               # 1 thread, CPU, reference ops

One "step" is what ``generation/train_stylegan2.py`` does per step without the lazy regularisers:
G forward+backward through D, then D forward+backward on fakes and reals (batch ``--batch``).
Separately, one R1 step (D forward, double backward). Variants are timed interleaved (A B A B ...)
so load from other processes hits them alike; report the ratio, not the absolute times.

bfloat16 on CPU is only fast where oneDNN has native bf16 kernels (AVX512-BF16 / AMX); the script
prints the CPU capability it found. The ops follow the 'auto' policy of
``generation/stylegan2/ops/_build.py`` (``HDVILA_OPS_IMPL=ref`` or ``compiled`` to force one path).
"""

from __future__ import annotations

import argparse
import copy
import json
import os

import torch

from bench_stylegan2 import timed  # sibling script (benchmarks/ is on sys.path when run as a script)
from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config, losses as L
from hdvila.training import cpu_has_native_bf16


def build(resolution: int, channel_base: int, channel_max: int, z_dim: int, mapping_layers: int, device):
    G = Generator(StyleGAN2Config(img_resolution=resolution, z_dim=z_dim, w_dim=z_dim, mapping_layers=mapping_layers,
                                  channel_base=channel_base, channel_max=channel_max)).train().to(device)
    D = Discriminator(DiscriminatorConfig(img_resolution=resolution, channel_base=channel_base,
                                          channel_max=channel_max)).train().to(device)
    return G, D


def main_step(G, D, reals, dtype, device) -> None:
    """G loss backward, then D loss backward on fakes and reals, under autocast to ``dtype``."""
    enabled = dtype != torch.float32
    z = torch.randn([reals.shape[0], G.z_dim], device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=enabled):
        fake = G(z)
        L.generator_loss(D(fake)).mean().backward()
    with torch.autocast(device.type, dtype=dtype, enabled=enabled):
        fake_logits = D(fake.detach())
    L.discriminator_loss(None, fake_logits).mean().backward()
    with torch.autocast(device.type, dtype=dtype, enabled=enabled):
        real_logits = D(reals)
    L.discriminator_loss(real_logits, None).mean().backward()


def r1_step(D, reals, dtype, device) -> None:
    real = reals.detach().requires_grad_(True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = D(real)
    L.r1_penalty(real, logits).mean().backward()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channel_base", type=int, default=2048)
    p.add_argument("--channel_max", type=int, default=256)
    p.add_argument("--z_dim", type=int, default=256)
    p.add_argument("--mapping_layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): batch 2, one run of each variant without warm-up, "
                   "1 thread, CPU, the reference ops (nothing to compile); not a measurement")
    a = p.parse_args(argv)
    if a.smoke:
        os.environ["HDVILA_OPS_IMPL"] = "ref"
        a.device, a.batch, a.repeats, a.threads = "cpu", 2, 1, 1
    warmup = 0 if a.smoke else 1
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    torch.manual_seed(0)
    G, D = build(a.resolution, a.channel_base, a.channel_max, a.z_dim, a.mapping_layers, device)
    reals = torch.rand([a.batch, 3, a.resolution, a.resolution], device=device) * 2 - 1
    variants = {  # name: (autocast dtype, memory format of the weights and the real images)
        "float32": (torch.float32, torch.contiguous_format),
        "float32+channels_last": (torch.float32, torch.channels_last),
        "bfloat16": (torch.bfloat16, torch.contiguous_format),
        "bfloat16+channels_last": (torch.bfloat16, torch.channels_last),
    }
    models = {fmt: (copy.deepcopy(G).to(memory_format=fmt), copy.deepcopy(D).to(memory_format=fmt),
                    reals.contiguous(memory_format=fmt)) for fmt in (torch.contiguous_format, torch.channels_last)}
    main_fns = [lambda d=d, m=models[f]: main_step(m[0], m[1], m[2], d, device) for d, f in variants.values()]
    r1_fns = [lambda d=d, m=models[f]: r1_step(m[1], m[2], d, device) for d, f in variants.values()]
    main_t, r1_t = timed(main_fns, device, a.repeats, warmup), timed(r1_fns, device, a.repeats, warmup)
    res = {"device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_native_bf16": cpu_has_native_bf16(),
           "threads": torch.get_num_threads(), "batch": a.batch, "resolution": a.resolution,
           "main_step_s": dict(zip(variants, main_t)), "r1_step_s": dict(zip(variants, r1_t)),
           "main_speedup": {k: main_t[0] / t for k, t in zip(variants, main_t)},
           "r1_speedup": {k: r1_t[0] / t for k, t in zip(variants, r1_t)}}
    print(f"device {device} ({res['cpu_capability']}, native bf16: {res['cpu_native_bf16']}), "
          f"{res['threads']} threads, batch {a.batch}, {a.resolution} px")
    print(f"  {'variant':24s} {'main step':>10s} {'speed-up':>8s} {'R1 step':>10s} {'speed-up':>8s}")
    for name, t, r in zip(variants, main_t, r1_t):
        print(f"  {name:24s} {t * 1e3:8.1f}ms {main_t[0] / t:7.2f}x {r * 1e3:8.1f}ms {r1_t[0] / r:7.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
