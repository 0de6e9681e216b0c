"""HD-VILA benchmarks: video embedding throughput, processor overhead over bare decord, large-model memory.

    .venv/bin/python benchmarks/bench_hdvila.py [--threads 2] [--skip-large] [--json OUT]
    .venv/bin/python benchmarks/bench_hdvila.py --smoke   # a check that it runs: 1 thread, batch 2, 1 repeat,
                                                          # 30-frame 720p, part 3 on mini

1. Throughput (clips/s) of ``get_video_features`` for the default model (``checkpoints/hdvila-mini``'s
   config, else the training script's demo preset) and the full ``mini`` preset on the CPU, fp32 and
   bf16 autocast; ``large`` (640x1024 HR) on CUDA when present.
2. Processor overhead: ``HDVILAProcessor.load_video`` (open, sample, one decord ``get_batch``, resize,
   crop, normalise) against bare decord (open, ``len``, ``get_batch(indices)``) of the *same* frame
   indices, wall and process CPU time (all threads; steadier on a loaded machine), for a demo-domain
   128 px mp4 (mini geometry) and a synthetic 1280x720 mp4 (large geometry, HR crop 640x1024).
   Target: at most 20% more time than bare decoding.
3. Peak memory of one ``large`` forward at 640x1024 (one clip, 7 frames): CUDA ``max_memory_allocated``
   when a GPU is present; on the CPU the peak RSS of a fresh subprocess that builds the model and runs
   one no-grad forward (model weights included, reported separately).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402


def _time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def default_config():
    from hdvila.configuration_hdvila import HDVILAConfig
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import bundled
    from hdvila.train import DEMO_OVERRIDES

    folder = bundled("hdvila-mini")
    if (folder / "config.json").is_file():
        return HDVILAModel.read_config(folder), str(folder)
    return HDVILAConfig.preset("mini", stage=1, **DEMO_OVERRIDES), "train.py demo preset"


@torch.no_grad()
def throughput(config, device: str, batch: int, clips: int, repeats: int, dtype: torch.dtype | None) -> float:
    from hdvila.modeling_hdvila import HDVILAModel

    model = HDVILAModel(config).eval().to(device)
    hr = torch.randn(batch, clips, 3, *config.hr_size, device=device)
    lr = torch.randn(batch, clips, config.num_frames - 1, 3, *config.lr_size, device=device)

    def run():
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            model.get_video_features(hr, lr)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * clips / _time(run, repeats)


def processor_overhead(video: Path, processor, repeats: int) -> dict:
    """Median seconds of bare decord get_batch vs processor.load_video on the same indices."""
    from decord import VideoReader, cpu

    total = len(VideoReader(str(video), ctx=cpu(0)))
    indices = list(processor.sample(total).unique)

    def bare():
        # The least any decord user writes: open, read the length (needed to choose frames), one
        # get_batch. (Chaining get_batch on a temporary reader measures ~10% less on 720p, because
        # the decoder is freed before the frames are copied out; that is not a usable pattern.)
        reader = VideoReader(str(video), ctx=cpu(0))
        len(reader)
        reader.get_batch(indices).asnumpy()

    def full():
        processor.load_video(video)
    t_bare, t_full, c_bare, c_full = [], [], [], []
    bare(), full()
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        for fn, wall, cpu_ in ((bare, t_bare, c_bare), (full, t_full, c_full)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu_.append(time.process_time() - c0)  # all threads of this process: robust to other load
    b, f = statistics.median(t_bare), statistics.median(t_full)
    cb, cf = statistics.median(c_bare), statistics.median(c_full)
    return {"frames": len(indices), "bare_decord_s": b, "processor_s": f, "overhead_pct": 100 * (f / b - 1),
            "bare_decord_cpu_s": cb, "processor_cpu_s": cf, "overhead_cpu_pct": 100 * (cf / cb - 1)}


def make_videos(folder: Path, hd_frames: int = 90) -> dict[str, Path]:
    import numpy as np

    from hdvila.demo.dataset import DemoVideoDataset
    from hdvila.videoio import write_video

    demo = folder / "demo.mp4"
    write_video(demo, DemoVideoDataset("test", 1).get(0)["video"], fps=8)
    # 720p, 90 frames: a moving gradient with noise (incompressible enough to decode like real footage).
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:720, 0:1280]
    frames = np.empty((hd_frames, 720, 1280, 3), np.uint8)
    for t in range(hd_frames):
        base = ((xx + 8 * t) % 256).astype(np.uint8)
        frames[t, ..., 0] = base
        frames[t, ..., 1] = ((yy + 3 * t) % 256).astype(np.uint8)
        frames[t, ..., 2] = rng.integers(0, 255, (720, 1280), dtype=np.uint8) // 4 + 96
    hd = folder / "hd720.mp4"
    write_video(hd, frames, fps=30, crf=23)
    return {"demo": demo, "hd720": hd}


_LARGE_CHILD = r"""
import resource, sys, time, torch
sys.path.insert(0, {repo!r})
torch.set_num_threads({threads})
from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.modeling_hdvila import HDVILAModel
def rss():  # peak RSS in MiB of this process: VmHWM (ru_maxrss of a child starts at its parent's peak)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cfg = HDVILAConfig.preset({preset!r}, stage=2)
base = rss()
model = HDVILAModel(cfg).eval()
after_model = rss()
hr = torch.randn(1, 1, 3, *cfg.hr_size); lr = torch.randn(1, 1, cfg.num_frames - 1, 3, *cfg.lr_size)
ids = torch.randint(1000, 2000, (1, 30)); mask = torch.ones(1, 30, dtype=torch.long)
t0 = time.time()
with torch.no_grad():
    model(ids, mask, hr, lr)
print(base, after_model, rss(), time.time() - t0, sum(p.numel() for p in model.parameters()))
"""


def large_memory(threads: int, preset: str = "large") -> dict:
    """Peak memory of one forward of the ``preset`` model (its own HR/LR geometry; 'large': 640x1024)."""
    if torch.cuda.is_available() and preset == "large":
        from hdvila.configuration_hdvila import HDVILAConfig
        from hdvila.modeling_hdvila import HDVILAModel

        model = HDVILAModel(HDVILAConfig.preset("large", stage=2)).eval().cuda()
        torch.cuda.reset_peak_memory_stats()
        weights = torch.cuda.memory_allocated()
        hr = torch.randn(1, 1, 3, 640, 1024, device="cuda")
        lr = torch.randn(1, 1, 6, 3, 160, 256, device="cuda")
        ids = torch.randint(1000, 2000, (1, 30), device="cuda")
        with torch.no_grad():
            model(ids, torch.ones_like(ids), hr, lr)
        torch.cuda.synchronize()
        return {"device": torch.cuda.get_device_name(), "weights_mib": weights / 2**20,
                "peak_mib": torch.cuda.max_memory_allocated() / 2**20}
    code = _LARGE_CHILD.format(repo=str(REPO), threads=threads, preset=preset)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"device": "cpu", "skipped": f"subprocess failed: {proc.stderr[-500:]}"}
    base, after_model, peak, seconds, params = map(float, proc.stdout.split()[-5:])
    return {"device": "cpu", "interpreter_mib": base, "after_model_mib": after_model, "peak_rss_mib": peak,
            "forward_activation_mib": peak - after_model, "forward_s": seconds, "parameters": int(params)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-large", action="store_true", help="skip the large-model memory measurement")
    p.add_argument("--json", default=None)
    p.add_argument("--smoke", action="store_true",
                   help="a check that it runs (seconds): 1 thread, batch 2, 1 repeat, a 30-frame 720p video, the "
                        "memory measurement on the mini preset instead of large; no --json; not a measurement")
    args = p.parse_args(argv)
    batch, hd_frames, memory_preset = 16, 90, "large"
    if args.smoke:
        args.threads, args.repeats, args.json = 1, 1, None
        batch, hd_frames, memory_preset = 2, 30, "mini"
    torch.set_num_threads(args.threads)
    from hdvila.configuration_hdvila import HDVILAConfig
    from hdvila.processing_hdvila import HDVILAProcessor

    results: dict = {"threads": args.threads, "load_avg_at_start": os.getloadavg()}
    cfg, source = default_config()
    rows = []
    for name, config in (("default (" + source + ")", cfg), ("mini preset", HDVILAConfig.preset("mini", stage=1))):
        for label, dt in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
            rows.append({"model": name, "device": "cpu", "dtype": label,
                         "clips_per_s": throughput(config, "cpu", batch, 1, args.repeats, dt)})
    if torch.cuda.is_available() and not args.smoke:
        rows.append({"model": "large", "device": torch.cuda.get_device_name(), "dtype": "fp16 autocast",
                     "clips_per_s": throughput(HDVILAConfig.preset("large", stage=1), "cuda", 8, 1, args.repeats,
                                               torch.float16)})
    results["throughput"] = rows
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), hd_frames)
        results["overhead"] = {
            "demo 128px, mini geometry (4 clips x 7)": processor_overhead(
                videos["demo"], HDVILAProcessor.from_config(cfg, n_clips=4), args.repeats * 4),
            "720p, large geometry (4 clips x 7)": processor_overhead(
                videos["hd720"], HDVILAProcessor.from_preset("large", n_clips=4), args.repeats),
        }
    results["large_memory"] = ({"skipped": "--skip-large"} if args.skip_large
                               else large_memory(args.threads, memory_preset))
    results["load_avg_at_end"] = os.getloadavg()

    print(f"threads {args.threads}, load average at start {results['load_avg_at_start'][0]:.1f} "
          f"(the machine is shared; numbers are under that load)\n")
    print("| model | device | dtype | clips/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['device']} | {r['dtype']} | {r['clips_per_s']:.1f} |")
    print("\n| video | frames decoded | bare decord (ms wall / CPU) | processor.load_video (ms wall / CPU) | "
          "overhead wall | overhead CPU |\n|---|---|---|---|---|---|")
    for name, r in results["overhead"].items():
        print(f"| {name} | {r['frames']} | {1000 * r['bare_decord_s']:.1f} / {1000 * r['bare_decord_cpu_s']:.1f} | "
              f"{1000 * r['processor_s']:.1f} / {1000 * r['processor_cpu_s']:.1f} | {r['overhead_pct']:+.1f}% | "
              f"{r['overhead_cpu_pct']:+.1f}% |")
    hr = HDVILAConfig.preset(memory_preset).hr_size
    print(f"\n{memory_preset} model, one clip at {hr[0]}x{hr[1]}:", json.dumps(results["large_memory"]))
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
