"""Super-resolution speed and memory: the text-conditioned SR network (one forward pass) at 64, 256
and 1024 px outputs, and against a diffusion upscaler of the same parameter count run for 75 steps.

    .venv/bin/python benchmarks/bench_sr.py                          # CPU, all sizes
    .venv/bin/python benchmarks/bench_sr.py --sizes 64,256 --device cuda
    .venv/bin/python benchmarks/bench_sr.py --smoke   # a check that it runs: 64 px, smallest UNet, 1 repeat, 1 step,
                                                      # 1 thread, reference ops

Each configuration runs in its own subprocess, so its peak memory (CPU: the process's maximum
resident set; CUDA: ``torch.cuda.max_memory_allocated``) is its own. 64 px uses the bundled generator;
256 and 1024 px use config-f generators (NVlabs' StyleGAN2 config f: 512-d w, 8 mapping layers,
channel_base 32768, channel_max 512) with random weights, since speed does not depend on the
weights. The SR model is built for each generator at x4 (LR 16, 64 and 256 px).

The diffusion baseline is a diffusers ``UNet2DConditionModel`` conditioned on the bicubic-upsampled LR
image (concatenated to the noisy input, as SD x4 and SR3 do) and on a text embedding (cross-attention),
with its widths chosen so its parameter count matches SR network + latent bank, run for 75 denoising
steps with ``DDIMScheduler`` at 64 px.
Compare the ratio, which this run measures on the same machine at the same time; absolute times
on these shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _generator(size: int):
    from generation.stylegan2.config import StyleGAN2Config
    from generation.stylegan2.convert import load_stylegan2
    from generation.stylegan2.networks import Generator
    from hdvila.paths import bundled

    if size == 64:
        return load_stylegan2(bundled("stylegan2-demo64"))
    return Generator(StyleGAN2Config(z_dim=512, w_dim=512, img_resolution=size, mapping_layers=8, channel_base=32768,
                                     channel_max=512)).eval()


def _peak(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (op builds, allocator)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def child_sr(size: int, batch: int, repeats: int, device_name: str) -> dict:
    import torch

    from generation.superres.modeling_sr import SRModel, config_for_generator

    device = torch.device(device_name)
    G = _generator(size).to(device).requires_grad_(False)
    sr = SRModel(config_for_generator(G, scale=4, text_dim=256)).eval().to(device)
    lr = torch.rand(batch, 3, size // 4, size // 4, device=device) * 2 - 1
    text = torch.nn.functional.normalize(torch.randn(batch, 256, device=device), dim=1)

    def run():
        with torch.no_grad():
            sr(lr, G, text)
        if device.type == "cuda":
            torch.cuda.synchronize()

    sec = _time(run, repeats)
    return {"what": "sr", "size": size, "batch": batch, "sec_per_image": sec / batch, "images_per_s": batch / sec,
            "peak_mib": _peak(device), "params_sr": _params(sr), "params_bank": _params(G)}


def _unet(target: int, options: list[tuple[int, int]] | None = None):
    """The 4-level diffusers ``UNet2DConditionModel`` (widths b, 2b, 4b, 4b; 1 or 2 ResNet layers per
    block; cross-attention on a 256-d text embedding, as SD x4 attends to its prompt) whose parameter
    count is nearest to ``target``, among ``options`` ((b, layers) pairs; default all of b in 32, 64,
    96 and 1 or 2 layers)."""
    from diffusers import UNet2DConditionModel

    def build(base, layers):
        return UNet2DConditionModel(sample_size=64, in_channels=6, out_channels=3, layers_per_block=layers,
                                    block_out_channels=(base, base * 2, base * 4, base * 4), cross_attention_dim=256,
                                    attention_head_dim=8)

    if options is None:
        options = [(b, n) for b in (32, 64, 96) for n in (1, 2)]  # widths divisible by GroupNorm's 32 groups
    best = min((abs(_params(build(b, n)) - target), b, n) for b, n in options)
    return build(best[1], best[2])


def child_diffusion(target_params: int, steps: int, repeats: int, device_name: str,
                    options: list[list[int]] | None = None) -> dict:
    import torch
    from diffusers import DDIMScheduler

    device = torch.device(device_name)
    unet = _unet(target_params, [tuple(o) for o in options] if options else None).eval().to(device)
    sched = DDIMScheduler(num_train_timesteps=1000)
    cond = torch.rand(1, 3, 64, 64, device=device) * 2 - 1
    text = torch.nn.functional.normalize(torch.randn(1, 1, 256, device=device), dim=-1)  # [batch, tokens, dim]

    def run():
        sched.set_timesteps(steps)
        x = torch.randn(1, 3, 64, 64, device=device)
        with torch.no_grad():
            for t in sched.timesteps:
                eps = unet(torch.cat([x, cond], 1), t, encoder_hidden_states=text).sample
                x = sched.step(eps, t, x).prev_sample
        if device.type == "cuda":
            torch.cuda.synchronize()

    sec = _time(run, repeats)
    return {"what": "diffusion", "size": 64, "batch": 1, "steps": steps, "sec_per_image": sec, "images_per_s": 1 / sec,
            "peak_mib": _peak(device), "params_unet": _params(unet)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64,256,1024")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=75, help="diffusion steps (the baseline)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the rows as JSON")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="a check that it runs (seconds): 64 px only, the smallest "
                   "UNet, 1 repeat, 1 diffusion step, 1 thread, the reference ops; not a measurement")
    a = p.parse_args(argv)
    if a.smoke:
        import os

        os.environ["HDVILA_OPS_IMPL"] = "ref"  # nothing to compile (the children inherit it)
        a.sizes, a.repeats, a.steps, a.threads = "64", 1, 1, 1
    if a.child:  # only the children import torch: the parent just starts them and prints
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        spec = json.loads(a.child)
        fn = child_sr if spec.pop("kind") == "sr" else child_diffusion
        print("RESULT " + json.dumps(fn(**spec, repeats=a.repeats, device_name=a.device)))
        return

    def spawn(spec: dict) -> dict:
        cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--repeats", str(a.repeats), "--device", a.device]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:  # show why (the child's traceback), not only that it failed
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"the {spec['kind']} measurement failed (exit status {proc.returncode})")
        return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])

    rows = [spawn({"kind": "sr", "size": int(s), "batch": a.batch}) for s in a.sizes.split(",")]
    sr64 = next((r for r in rows if r["size"] == 64), None) or spawn({"kind": "sr", "size": 64, "batch": 1})
    diffusion = {"kind": "diffusion", "target_params": sr64["params_sr"] + sr64["params_bank"], "steps": a.steps}
    if a.smoke:
        diffusion["options"] = [[32, 1]]  # the smallest UNet only (no search over six builds)
    rows.append(spawn(diffusion))
    print(f"{'what':>10} {'out px':>6} {'params':>12} {'s/image':>9} {'images/s':>9} {'peak MiB':>9}")
    for r in rows:
        params = r.get("params_unet") or r["params_sr"] + r["params_bank"]
        print(f"{r['what']:>10} {r['size']:>6} {params:>12,} {r['sec_per_image']:>9.4f} {r['images_per_s']:>9.2f} "
              f"{r['peak_mib']:>9.0f}")
    diff = rows[-1]
    print(f"diffusion ({a.steps} steps) / SR at 64 px, time per image: "
          f"{diff['sec_per_image'] / sr64['sec_per_image']:.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
