"""Every benchmark script runs: each one's ``--smoke`` mode (tiny sizes, one repeat, one thread, the
reference StyleGAN2 ops, outputs in a temporary folder; seconds each) in a subprocess, as a user runs
it, so that an API change which breaks a benchmark fails here instead of at the next measurement.

The selected scripts start together when the first test needs them and run two at a time (each on
one thread), which halves the module's wall time on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO

#: Every benchmark script (repository-relative), with what its smoke output must contain: the
#: table's header and the names of its rows. Longest first (they are scheduled in this order).
EXPECT: dict[str, list[str]] = {
    "benchmarks/bench_web_load.py": ['"startup_s"', '"requests": 2', '"succeeded": 2', '"edit_p50_s"',
                                     '"upscale_p50_s"'],
    "benchmarks/bench_first_edit.py": ["| background build (default) |", '"first_edit_s"', '"second_edit_s"',
                                       "ops serve until they are ready"],
    "benchmarks/quality/calibrate_domain.py": ["| calibration (24 val renders, quantile 0.01) | threshold",
                                              "| test renders flagged (wrongly) |", "| real photos flagged |",
                                              "photos: astronaut"],
    "benchmarks/bench_sr.py": ["what", "out px", "peak MiB", "        sr     64", " diffusion     64",
                               "diffusion (1 steps) / SR at 64 px, time per image:"],
    "benchmarks/bench_hdvila.py": [
        "| model | device | dtype | clips/s |", "| mini preset | cpu | fp32 |", "| mini preset | cpu | bf16 autocast |",
        "| video | frames decoded | bare decord", "| demo 128px, mini geometry (4 clips x 7) |",
        "| 720p, large geometry (4 clips x 7) |", "mini model, one clip at 128x128:", '"peak_rss_mib"'],
    "benchmarks/bench_edit.py": ['"one_pass_s"', '"forwards_s"', '"encoder"', '"mapper"', '"generator"',
                                 '"hdvila text"', '"hdvila image"', "2-step projector + 2-step optimisation",
                                 '"speedup"', '"peak_memory_mib"', '"one_pass_with_refine_steps_s"'],
    "benchmarks/bench_train_step.py": ["main step", "R1 step", "  float32  ", "float32+channels_last", "bfloat16  ",
                                       "bfloat16+channels_last"],
    "benchmarks/bench_projector.py": ["| batch | s/image (2 steps) | speed-up vs batch 1 | mean PSNR |",
                                      "| 1 | ", "| 2 | "],
    "benchmarks/quality/eval_hdvila_default.py": [
        "### Text-to-video retrieval, 8 held-out test videos", "### Text-to-image retrieval, 8 held-out test images",
        "| train wordings |", "| heldout wordings |", "| frozen MiniLM alone",
        "| model, text-to-video, held-out wordings |"],
    "benchmarks/quality/eval_stylegan2_default.py": [
        "| metric (16 samples, truncation 1.0) | value |", "| judge confidence > 0.9 on every attribute |",
        "| FD-HDVILA (real-vs-real floor) |", "| attribute | class shares", "| W+ |"],
    "benchmarks/bench_stylegan2.py": [
        "extension build/load not needed ('ref' only)", "| op | shape | ref fwd ms |", "| upsample2d (skip image) |",
        "| bias_act lrelu + clamp 256 |", "| px | channels | ops | batch | ms/img |",
        "| 64 | base 8192, max 256 | ref | 1 |"],
    "benchmarks/bench_faces.py": ["| step | ms per frame |", "| detect (MTCNN, CPU) |", "| align (256 px crop) |",
                                  "| paste back |", "| total |", "first detection, with loading the detector"],
    "benchmarks/bench_demo_data.py": [
        "| item | items/s (1 thread) |", "| image 64 px |", "| image 256 px |", "| video 32 x 128 px (all frames) |",
        "| video 7 of 32 frames x 128 px (one hybrid clip) |"],
}
SCRIPTS = list(EXPECT)
TIMEOUT_S = 240
WORKERS = max(1, min(2, os.cpu_count() or 1))


def run_smoke(script: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, script, "--smoke"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    return proc, time.perf_counter() - t0


@pytest.fixture(scope="module")
def smoke(request):
    """{script: Future of (CompletedProcess, seconds)}: every selected script's smoke run, submitted at
    once and run ``WORKERS`` at a time (the longest first, as EXPECT lists them)."""
    selected = [item.callspec.params["script"] for item in request.session.items
                if getattr(item, "module", None) is request.module and hasattr(item, "callspec")
                and "script" in item.callspec.params]
    pool = ThreadPoolExecutor(WORKERS)
    jobs = {script: pool.submit(run_smoke, script) for script in sorted(set(selected), key=SCRIPTS.index)}
    yield jobs
    pool.shutdown(wait=True, cancel_futures=True)


def benchmark_scripts() -> list[str]:
    """Repository-relative paths of the scripts under benchmarks/ (files with a ``__main__`` block)."""
    main = re.compile(r"^if __name__ == ['\"]__main__['\"]\s*:", re.M)
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "benchmarks").rglob("*.py")
                  if main.search(p.read_text(encoding="utf-8")))


def test_every_benchmark_has_a_smoke_test():
    found = benchmark_scripts()
    assert "benchmarks/bench_edit.py" in found  # the discovery itself works
    missing = sorted(set(found) - set(SCRIPTS))
    assert not missing, f"benchmark scripts without a smoke test: add them (and a --smoke mode) to EXPECT: {missing}"
    gone = sorted(set(SCRIPTS) - set(found))
    assert not gone, f"EXPECT lists scripts that are gone: {gone}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script, smoke):
    proc, seconds = smoke[script].result()
    tail = f"\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{script} --smoke exited with {proc.returncode} after {seconds:.1f} s{tail}"
    missing = [s for s in EXPECT[script] if s not in proc.stdout]
    assert not missing, f"{script} --smoke printed no {missing}{tail}"
    assert "Traceback" not in proc.stderr, tail


@pytest.mark.parametrize("script", ["benchmarks/bench_edit.py", "benchmarks/bench_web_load.py"])
def test_smoke_json_reports(script, smoke):
    """The two JSON reports parse, and their numbers are numbers."""
    proc, _ = smoke[script].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    if script.endswith("bench_edit.py"):
        assert report["threads"] == 1 and report["one_pass_s"] > 0 and report["speedup"] > 0
        assert set(report["forwards_s"]) == {"encoder", "mapper", "generator", "hdvila text", "hdvila image"}
        assert list(report["one_pass_with_refine_steps_s"]) == ["2"] and report["one_pass_with_refine_steps_s"]["2"] > 0
    else:
        assert report["succeeded"] == report["requests"] == 2 and report["threads"] == 1 and report["startup_s"] > 0
