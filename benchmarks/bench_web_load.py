"""Load on the web UI: N concurrent requests (half /edit with the mapper, half /upscale) against the app
served in-process on the bundled defaults, through ``gradio_client``; every one must succeed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_web_load.py --requests 20
    .venv/bin/python benchmarks/bench_web_load.py --edit-model DIR     # another (or a not yet bundled) edit pipeline
    .venv/bin/python benchmarks/bench_web_load.py --smoke   # a check that it runs: 2 requests, 1 thread, reference ops

First it times ``hdvila app`` from the command to the page answering (HTTP 200 on ``/``) in a
subprocess (the issue's "ready within 20 s"). Then it reports the wall time for all requests, the
latency of each (submit to result: queueing included), the requests per second, and the process's
peak resident memory (server, models and client share
the process). The app queues requests with its concurrency limit (``--concurrency``, default the
app's), so the latency shows the queue. Models are loaded before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app_server import start_app  # sibling module (benchmarks/ is on sys.path when run as a script)


def time_startup(edit_model: str | None, cache_dir: Path, timeout: float = 120.0) -> float:
    """Seconds from starting ``hdvila app`` (a subprocess, its renders in ``cache_dir``) to its page
    answering with HTTP 200."""
    args = ["--cache-dir", str(cache_dir)] + (["--edit-model", edit_model] if edit_model else [])
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    proc, _, seconds = start_app(args, cache_dir.with_name(cache_dir.name + ".log"), timeout=timeout)
    proc.kill()
    proc.wait()
    return seconds


def main(argv: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        # Every file this process and the app's subprocess write (renders, gradio's uploads and the
        # client's downloads) goes under tmp, removed at the end. Set before gradio is imported.
        tmp_path = Path(tmp)
        (tmp_path / "tmp").mkdir()
        tempfile.tempdir = os.environ["TMPDIR"] = str(tmp_path / "tmp")
        os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
        os.environ.setdefault("HDVILA_CACHE", str(tmp_path / "emb"))  # the subprocess's embedding cache
        run(argv, tmp_path)


def run(argv: list[str] | None, tmp: Path) -> None:
    from apps.web import CONCURRENCY_LIMIT

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=CONCURRENCY_LIMIT, help="the app's concurrency limit")
    p.add_argument("--edit-model", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="a check that it runs (seconds): 2 requests, 1 thread, the "
                   "reference ops (nothing to compile); not a measurement")
    args = p.parse_args(argv)
    if args.smoke:
        os.environ["HDVILA_OPS_IMPL"] = "ref"  # also for the `hdvila app` subprocess
        args.requests, args.threads = 2, 1

    import torch
    from gradio_client import Client, handle_file

    from apps.web import build_app, serve

    if args.threads:
        torch.set_num_threads(args.threads)
    startup = time_startup(args.edit_model, tmp / "app")
    demo = build_app(edit_model=args.edit_model, cache_dir=tmp / "cache", embedding_cache=tmp / "emb", device="cpu",
                     concurrency_limit=args.concurrency)
    _, url, _ = serve(demo, port=None, prevent_thread_lock=True, quiet=True, preload=False)  # a free port
    state = demo.hdvila_state
    state.edit.get()
    state.sr.get()
    edit_examples, sr_examples = state.edit_examples.get(), state.examples.get()
    client = Client(url, verbose=False)

    def request(i: int) -> dict:
        t0 = time.perf_counter()
        if i % 2 == 0:
            path, prompt = edit_examples[(i // 2) % len(edit_examples)]
            out = client.predict(handle_file(path), prompt, "mapper", 1.0, 100, 0, api_name="/edit")
            ok = out[3]["inversion_psnr_db"] is not None
        else:
            path, caption = sr_examples[(i // 2) % len(sr_examples)]
            out = client.predict(handle_file(path), caption, api_name="/upscale")
            ok = Path(out[1]).is_file()
        return {"kind": "edit" if i % 2 == 0 else "upscale", "seconds": time.perf_counter() - t0, "ok": ok}

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.requests) as pool:
        results = list(pool.map(request, range(args.requests)))
    wall = time.perf_counter() - t0
    demo.close(verbose=False)
    lat = sorted(r["seconds"] for r in results)
    report = {"startup_s": round(startup, 2), "requests": args.requests, "succeeded": sum(r["ok"] for r in results),
              "concurrency_limit": args.concurrency, "threads": torch.get_num_threads(), "wall_s": round(wall, 2),
              "requests_per_s": round(args.requests / wall, 2),
              "latency_s": {"p50": round(statistics.median(lat), 2), "max": round(lat[-1], 2), "min": round(lat[0], 2)},
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    for kind in ("edit", "upscale"):
        ks = [r["seconds"] for r in results if r["kind"] == kind]
        report[f"{kind}_p50_s"] = round(statistics.median(ks), 2) if ks else None
    print(json.dumps(report, indent=1))
    if report["succeeded"] != args.requests:
        raise SystemExit(f"{args.requests - report['succeeded']} request(s) failed")


if __name__ == "__main__":
    main()
