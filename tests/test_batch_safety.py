"""Batch commands never destroy what they did not make: the input itself, files another run or another
program left at an output path, or a folder that is in the way; and bad devices, output kinds and
clip-smoothing values are refused in one line before any work."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from apps.batch import Job, plan_jobs, run_jobs
from hdvila.errors import UserError


def _png(path, size=(16, 16), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


def test_the_input_is_never_its_own_output(tmp_path):
    img = _png(tmp_path / "a.png")
    with pytest.raises(UserError, match="the input file itself"):
        plan_jobs(img, img)
    with pytest.raises(UserError, match="the input file itself"):
        plan_jobs(img, tmp_path)  # a folder output: a.png -> the same a.png
    with pytest.raises(UserError, match="output folder is the input folder"):
        plan_jobs(tmp_path, tmp_path / ".")


def test_no_output_lands_on_another_input(tmp_path):
    _png(tmp_path / "in" / "a.png")
    _png(tmp_path / "in" / "in" / "a.png", seed=1)  # in/in/a.png -> OUT/in/a.png, with OUT = tmp_path
    with pytest.raises(UserError, match="would replace an input file"):
        plan_jobs(tmp_path / "in", tmp_path)


def test_an_output_folder_inside_the_input_folder_is_not_input(tmp_path):
    src = tmp_path / "frames"
    _png(src / "a.png")
    _png(src / "edited" / "a.png", seed=1)  # an earlier run's output
    jobs = plan_jobs(src, src / "edited")
    assert [j.rel for j in jobs] == ["a.png"]


def _write(job, meta):
    job.dst.parent.mkdir(parents=True, exist_ok=True)
    job.dst.write_bytes(b"out")
    job.dst.with_name(job.dst.name + ".json").write_text(json.dumps(meta))


def test_only_outputs_made_with_these_settings_count_as_done(tmp_path):
    jobs = [Job(tmp_path / f"in{i}.png", tmp_path / "out" / f"o{i}.png", "image", f"in{i}.png") for i in range(5)]
    _write(jobs[0], {"prompt": "blue", "input": "x"})          # this run's settings: done
    _write(jobs[1], {"prompt": "red"})                          # another prompt: kept, an error
    jobs[2].dst.write_bytes(b"someone else's file")            # no record (or an earlier version's): kept, a warning
    jobs[3].dst.mkdir()                                         # a folder in the way: an error
    processed = []

    def process(batch):
        for job in batch:
            processed.append(job.dst.name)
            job.dst.write_bytes(b"new")

    r = run_jobs(jobs, process, progress=False, settings=lambda job: {"prompt": "blue", "steps": None})
    assert processed == ["o4.png"] and r["done"] == 1 and r["skipped"] == 2 and r["failed"] == 2
    why = {e["input"][-7:]: e["error"] for e in r["errors"]}
    assert "prompt 'red' there, 'blue' now" in why["in1.png"] and "--overwrite" in why["in1.png"]
    assert "is a folder where the output file should go" in why["in3.png"]
    assert r["unrecorded"] == [str(jobs[2].dst)]
    assert jobs[1].dst.read_bytes() == b"out" and jobs[2].dst.read_bytes() == b"someone else's file"
    r = run_jobs(jobs, process, progress=False, overwrite=True, settings=lambda job: {"prompt": "blue"})
    assert r["done"] == 4 and r["failed"] == 1 and jobs[2].dst.read_bytes() == b"new"  # asked for: replaced


def test_an_os_error_is_that_file_s_error_and_the_batch_goes_on(tmp_path):
    jobs = [Job(tmp_path / f"in{i}.png", tmp_path / f"o{i}.png", "image", f"in{i}.png") for i in range(3)]

    def process(batch):
        for job in batch:
            if job.src.name == "in1.png":
                raise PermissionError(13, "Permission denied", str(job.src))
            job.dst.write_bytes(b"new")

    r = run_jobs(jobs, process, batch_size=3, progress=False)
    assert r["done"] == 2 and r["failed"] == 1
    assert "Permission denied" in r["errors"][0]["error"] and "in1.png" in r["errors"][0]["error"]


@pytest.mark.parametrize("name", ["bogus", "meta", "mps", "cuda:x"])
def test_bad_devices_are_one_line_errors(name):
    from hdvila.device import get_device

    with pytest.raises(UserError, match="cpu, cuda or cuda:N"):
        get_device(name)


def test_output_kinds_and_replaced_folders(tmp_path):
    from hdvila.atomic import check_replaceable, check_writable

    with pytest.raises(UserError, match="that is a folder; give a file path"):
        check_writable(tmp_path, "--json x", "file")
    f = _png(tmp_path / "a.png")
    with pytest.raises(UserError, match="that is a file; give a folder path"):
        check_writable(f, "OUT", "folder")
    check_writable(tmp_path / "new", "OUT", "folder")
    with pytest.raises(UserError, match="that is a file"):
        check_replaceable(f, "pipeline_index.json", "edit pipeline folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an earlier edit pipeline folder"):
        check_replaceable(tmp_path / "notes", "pipeline_index.json", "edit pipeline folder")
    assert (tmp_path / "notes" / "notes.txt").read_text() == "mine"
    (tmp_path / "notes" / "pipeline_index.json").write_text("{}")
    check_replaceable(tmp_path / "notes", "pipeline_index.json", "edit pipeline folder")  # an earlier one: may go
    check_replaceable(tmp_path / "absent", "pipeline_index.json", "edit pipeline folder")


@pytest.mark.parametrize("sigma", [math.nan, -1.0, 1e7, math.inf, "1", True])
def test_temporal_sigma_is_checked(sigma):
    from generation.editing.clips import check_temporal_sigma

    with pytest.raises(UserError, match="temporal sigma must be a number from 0"):
        check_temporal_sigma(sigma)


def test_cli_refuses_before_any_work(tmp_path, capsys):
    from apps.cli import main

    img = _png(tmp_path / "a.png", (64, 64))
    o = str(tmp_path / "o.png")
    cases = [(["edit", str(img), str(img), "--prompt", "a blue one", "--overwrite"], "the input file itself"),
             (["edit", str(img), o, "--prompt", "x", "--device", "meta"], "only cpu and cuda"),
             (["edit", str(img), o, "--prompt", "x", "--temporal-sigma", "nan"], "temporal sigma"),
             (["edit", str(img), o, "--prompt", "x", "--max-frames", "0"], "--max-frames"),
             (["eval-guide", "--num", "2", "--json", str(tmp_path)], "that is a folder"),
             (["assemble-edit", str(img), "--encoder", str(tmp_path)], "that is a file")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing written, the input intact
    assert Image.open(img).size == (64, 64)


def test_kept_outputs_without_a_record_get_one_warning(capsys):
    from apps.batch import finish

    result = {"done": 0, "skipped": 2, "failed": 0, "errors": [], "unrecorded": ["out/a.png", "out/b.png"]}
    assert finish(result, "upscaled 0 file(s)") == 0  # kept, not failed: an earlier version's outputs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: kept 2 existing output(s) with no record") and \
        "out/a.png" in err[0] and "--overwrite" in err[0]


def test_an_animation_is_read_as_its_first_frame_with_a_note(tmp_path, capsys):
    from apps.cli import main
    from hdvila.imageio import animation_note, load_image

    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[1].save(tmp_path / "still.gif")
    img = load_image(tmp_path / "anim.gif")
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 0, 0)
    assert animation_note(img) == "an animation of 3 frames: only its first frame is used"
    assert animation_note(load_image(tmp_path / "still.gif")) == ""
    assert main(["upscale", str(tmp_path / "anim.gif"), str(tmp_path / "up.png"), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "animation" in line]
    assert notes == [f"note: {tmp_path / 'anim.gif'}: an animation of 3 frames: only its first frame is used"]
