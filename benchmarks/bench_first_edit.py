"""The first edit after ``hdvila app`` starts on a machine with an empty ops cache.

    .venv/bin/python benchmarks/bench_first_edit.py --repeats 3
    .venv/bin/python benchmarks/bench_first_edit.py --smoke    # a check that it runs: one repeat

Each repeat starts ``hdvila app`` in a subprocess with a fresh, empty ``HDVILA_EXTENSIONS_DIR`` (so the
C++ StyleGAN2 ops have never been built), waits for the page (HTTP 200 on ``/``), then sends one
``/edit`` request (a demo render, the mapper) through ``gradio_client`` and times it from the page
being ready to the answer. The app builds the ops in the background and serves with the reference
ops meanwhile (:func:`generation.stylegan2.ops._build.build_in_background`); ``--foreground`` runs the
same with ``HDVILA_OPS_IMPL=compiled``, where the first request waits for the build, as every request
did before. Reports seconds per repeat and the app's log lines about the ops. The target (issue:
reliability) is under 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from app_server import start_app  # sibling module (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent


def first_edit(tmp: Path, foreground: bool, timeout: float = 300.0) -> dict:
    """One cold start: {"page_s", "first_edit_s", "ops_log"}."""
    from gradio_client import Client, handle_file

    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.imageio import save_image

    image = save_image(DemoImageDataset("test", 1, resolution=64)[0]["image"], tmp / "frame.png")
    env = {**os.environ, "HDVILA_EXTENSIONS_DIR": str(tmp / "empty-ops-cache"), "GRADIO_TEMP_DIR": str(tmp / "gradio"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if foreground:
        env["HDVILA_OPS_IMPL"] = "compiled"
    log = tmp / "app.log"
    proc, port, page_s = start_app(["--cache-dir", str(tmp / "cache")], log, env=env, cwd=REPO, timeout=timeout)
    try:
        ready = time.perf_counter()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp / "downloads"))
        result = client.predict(handle_file(str(image)), "make it blue", "mapper", 1.0, 100, 0, api_name="/edit")
        done = time.perf_counter()
        assert result[3]["inversion_psnr_db"] > 0, result
        client.predict(handle_file(str(image)), "make it red", "mapper", 1.0, 100, 0, api_name="/edit")
        second = time.perf_counter() - done
    finally:
        proc.kill()
        proc.wait()
    ops = [line.strip() for line in log.read_text().splitlines() if "ops" in line and "StyleGAN2" in line]
    return {"page_s": page_s, "first_edit_s": done - ready, "second_edit_s": second, "ops_log": ops}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--foreground", action="store_true",
                   help="HDVILA_OPS_IMPL=compiled: the request waits for the build")
    p.add_argument("--smoke", action="store_true", help="one repeat (a check that the benchmark runs)")
    args = p.parse_args(argv)
    runs = []
    for _ in range(1 if args.smoke else args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-first-edit-") as tmp:
            os.environ["GRADIO_TEMP_DIR"] = str(Path(tmp) / "gradio")
            runs.append(first_edit(Path(tmp), args.foreground))
    times = [r["first_edit_s"] for r in runs]
    print(f"| ops | page ready (s) | first edit after the page (s), {len(runs)} cold start(s) | the next edit (s) |")
    print("|---|---|---|---|")
    print(f"| {'foreground build (HDVILA_OPS_IMPL=compiled)' if args.foreground else 'background build (default)'} | "
          f"{statistics.median(r['page_s'] for r in runs):.1f} | median {statistics.median(times):.2f}, "
          f"max {max(times):.2f} | {statistics.median(r['second_edit_s'] for r in runs):.2f} |")
    print("app log: " + " | ".join(runs[-1]["ops_log"]))
    print(json.dumps({"first_edit_s": times, "second_edit_s": [r["second_edit_s"] for r in runs],
                      "page_s": [r["page_s"] for r in runs], "foreground": args.foreground}))


if __name__ == "__main__":
    main()
