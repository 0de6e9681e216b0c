"""The batch CLI under failure and scale-out: ``hdvila upscale`` killed with SIGKILL mid-run and rerun
(every output complete and valid, none missing or duplicated, no temporary files left), and
``accelerate launch -m apps.cli edit`` on 2 CPU processes (every file done exactly once, with its
metadata); the stale-temporary matcher of :mod:`hdvila.atomic`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hdvila.atomic import finished_files
from tests.conftest import REPO

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _images(folder: Path, n: int, size: int = 16) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"sub{i % 3}" / f"img_{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())  # temporaries included: none may be left


def test_finished_files_leave_out_writes_in_progress(tmp_path):
    """What a reader may open while a writer runs (or after it was killed): a file being written by
    atomic_path, or left by a kill, matches ``*.png`` but is not an output."""
    from hdvila.atomic import atomic_dir, atomic_path, is_temporary

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "done.png").write_bytes(b"x")
    with atomic_path(tmp_path / "sub" / "img_012.png") as tmp, atomic_dir(tmp_path / "model") as folder:
        tmp.write_bytes(b"half")
        (folder / "weights.png").write_bytes(b"x")
        assert is_temporary(tmp) and is_temporary(folder)
        assert [p.name for p in tmp_path.rglob("*.png")].count(tmp.name) == 1  # what the flaky test opened
        assert finished_files(tmp_path, "*.png") == [tmp_path / "sub" / "done.png"]
    assert finished_files(tmp_path, "*.png") == [tmp_path / "model" / "weights.png", tmp_path / "sub" / "done.png",
                                                 tmp_path / "sub" / "img_012.png"]
    assert not is_temporary(tmp_path / "sub" / "done.png")


def test_stale_temporaries_match_only_their_target(tmp_path):
    from hdvila.atomic import atomic_path, stale_temporaries

    target = tmp_path / "a.png"
    for name in (".tmp-a.k2j_9xq0.png", ".tmp-a.b.k2j_9xq0.png", ".tmp-a.k2j_9xq0.jpg", "a.png",
                 ".tmp-ab.k2j_9xq0.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in stale_temporaries(target)] == [".tmp-a.k2j_9xq0.png"]
    with atomic_path(tmp_path / "c.png") as tmp:  # the pattern is the one atomic_path really makes
        assert stale_temporaries(tmp_path / "c.png") == [tmp]


def test_sigkill_mid_batch_then_rerun_completes_every_output_once(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = _images(src, 60)
    # The last input (in the run's sorted order) is a FIFO while the first run goes: reading it blocks
    # until the kill, so the run cannot finish before the kill however slowly this process is
    # scheduled (60 files of 16 px take ~2 s once the model is loaded). It is a real image again for the rerun.
    last = inputs[-1]
    assert last == max(inputs, key=lambda p: p.relative_to(src).parts)
    last_bytes = last.read_bytes()
    last.unlink()
    os.mkfifo(last)
    cmd = [sys.executable, "-m", "apps.cli", "upscale", str(src), str(out), "--batch-size", "1", "--quiet",
           "--device", "cpu"]
    log = tmp_path / "first-run.stderr"
    with open(log, "wb") as err:  # a file, not a pipe nobody reads: a full pipe would stall the run
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 600  # a guard against a hang only; the run needs 5 outputs
        while time.monotonic() < deadline and proc.poll() is None and len(finished_files(out, "*.png")) < 5:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + log.read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last.unlink()
    last.write_bytes(last_bytes)
    first = finished_files(out, "*.png")  # a write in progress when the kill landed is a temporary, not an output
    assert 5 <= len(first) < len(inputs)
    for p in first:  # whatever the kill left under a final name is a complete image
        with Image.open(p) as im:
            im.load()
            assert im.size == (64, 64)
    # A temporary file of a write in progress may be left; the rerun removes it and redoes that job.
    rerun = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(first)} already done" in rerun.stdout
    assert f"upscaled {len(inputs) - len(first)} file(s)" in rerun.stdout
    want = sorted(out / p.relative_to(src) for p in inputs)
    sidecars = [p.with_name(p.name + ".json") for p in want]  # each output's record of how it was made
    assert _outputs(out) == sorted(want + sidecars), "missing, extra or temporary files after the rerun"
    for p in want:
        with Image.open(p) as im:
            im.load()
            assert im.size == (64, 64)


def test_finish_waits_for_every_process_before_a_failing_exit(monkeypatch, capsys):
    """torchrun stops all processes as soon as one exits non-zero, so a process whose share held a bad
    file must wait for the others (which may still be working) before it returns its exit status."""
    import accelerate

    from apps.batch import finish

    calls = []
    monkeypatch.setattr(accelerate.PartialState, "wait_for_everyone", lambda self: calls.append(capsys.readouterr()))
    failed = {"done": 3, "failed": 1, "errors": [{"input": "x/broken.png", "error": "x/broken.png: not an image"}]}
    assert finish(failed, "edited 3 file(s)", world_size=1) == 1 and calls == []
    capsys.readouterr()
    assert finish({"done": 4, "failed": 0, "errors": []}, "edited 4 file(s)", world_size=2) == 0
    assert finish(failed, "edited 3 file(s)", world_size=2) == 1
    # the summary and the error lines are out before the wait, so a stopped sibling cannot swallow them
    assert [c.out for c in calls] == ["edited 4 file(s)\n", "edited 3 file(s)\n"]
    assert calls[1].err == "error: x/broken.png: not an image\n"


def test_accelerate_two_processes_edit_each_file_exactly_once(tmp_path):
    from tests.conftest import small_edit_pipeline

    model = small_edit_pipeline(tmp_path / "edit-pipeline")
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = _images(src, 7, size=64)
    (src / "sub0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    accelerate = str(Path(sys.executable).parent / "accelerate")
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "apps.cli", "edit", str(src), str(out),
           "--prompt", "make it striped", "--model", model, "--batch-size", "2", "--quiet", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, "a bad input must make the exit status non-zero"
    # The two processes share one stdout, unbuffered: a line of one can be cut by the other's ("... dBedited 3
    # file(s) ..."), so the summaries are found anywhere in it, not at line starts.
    done = [int(n) for n in re.findall(r"edited (\d+) file\(s\)", proc.stdout)]
    # 8 files split 4/4 by rank; the broken one fails on its rank: 7 edited in all, each exactly once.
    assert len(done) == 2 and sum(done) == len(inputs), proc.stdout[-3000:]
    want = sorted(out / p.relative_to(src) for p in inputs)
    assert sorted(out.rglob("*.png")) == want
    for p in want:
        meta = json.loads(p.with_name(p.name + ".json").read_text())
        assert meta["prompt"] == "make it striped" and meta["input"].endswith(p.relative_to(out).as_posix())
        assert isinstance(meta["inversion_psnr_db"], float)
        assert Image.open(p).size == (64, 64)
    reports = sorted(out.glob("hdvila-errors.rank*.jsonl"))
    errors = [json.loads(line) for r in reports for line in r.read_text().splitlines()]
    assert [Path(e["input"]).name for e in errors] == ["broken.png"]
