"""The training toolkit (hdvila.training): a tiny training script built on it runs 4 steps with a
checkpoint every 2, resumes, and continues exactly as an uninterrupted run (the diffusers example
tests' pattern); and the pieces on their own (EMA, sampler, seeds, stats, checkpoint listing)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hdvila.training import (
    EMA,
    StepBatchSampler,
    StepStats,
    list_checkpoints,
    load_training_state,
    prune_checkpoints,
    resolve_resume,
    step_seed,
)

REPO = Path(__file__).resolve().parents[1]

# A complete training script on the toolkit: a linear model on fixed data, with dropout (so the
# per-step seeds matter), an EMA, atomic checkpoints and resume.
SCRIPT = textwrap.dedent('''
    import argparse, json, logging, sys
    import torch
    from hdvila.training import (EMA, StepBatchSampler, StepStats, TimeBudget, add_common_args, build_accelerator,
                                 load_checkpoint, resolve_resume, run_cli, save_checkpoint, step_seed)

    def main():
        p = argparse.ArgumentParser()
        add_common_args(p, max_train_steps=4, checkpointing_steps=2, validation_steps=0)
        args = p.parse_args()
        accelerator = build_accelerator(args, logging.getLogger("tiny"), cpu=True)
        torch.manual_seed(args.seed)
        data = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model, opt = accelerator.prepare(model, opt)
        ema, stats, step = EMA(accelerator.unwrap_model(model), 0.9), StepStats(), 0
        if (resume := resolve_resume(args.output_dir, args.resume_from_checkpoint)) is not None:
            step = load_checkpoint(accelerator, resume)["step"]
            ema.load_state_dict(torch.load(resume / "ema.pt", weights_only=True))
        sampler = StepBatchSampler(len(data), 8, seed=args.seed, start_step=step)
        budget = TimeBudget(args.max_train_minutes)
        while step < args.max_train_steps:
            torch.manual_seed(step_seed(args.seed, step))
            x = data[sampler.indices(step, 0)]
            loss = stats.report("loss", (model(x) - x.sum(1, keepdim=True)).pow(2).mean())
            accelerator.backward(loss)
            opt.step(); opt.zero_grad()
            ema.update(accelerator.unwrap_model(model))
            step += 1
            accelerator.log(stats.collect(accelerator), step=step)
            if step % args.checkpointing_steps == 0 or budget.expired(accelerator):
                save_checkpoint(accelerator, args.output_dir, step, {"images": step * 8}, args.checkpoints_total_limit,
                                extra=lambda folder: torch.save(ema.state_dict(), folder / "ema.pt"))
        weights = {k: v.tolist() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        print("RESULT " + json.dumps({"step": step, "weights": weights}))

    if __name__ == "__main__":
        sys.exit(run_cli(main))
''')


def _run(script, *args):
    proc = subprocess.run([sys.executable, str(script), "--report_to", "none", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_tiny_script_checkpoints_resumes_and_continues_exactly(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    first = _run(script, "--output_dir", out)
    assert first["step"] == 4
    assert [s for s, _ in list_checkpoints(out)] == [2, 4]
    assert load_training_state(out / "checkpoint-4") == {"images": 32, "step": 4}
    assert (out / "checkpoint-4" / "ema.pt").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left behind

    resumed = _run(script, "--output_dir", out, "--max_train_steps", 6, "--resume_from_checkpoint", "latest",
                   "--checkpoints_total_limit", 2)
    assert resumed["step"] == 6
    assert [s for s, _ in list_checkpoints(out)] == [4, 6]  # checkpoint-2 pruned by the limit

    straight = _run(script, "--output_dir", tmp_path / "straight", "--max_train_steps", 6)
    assert resumed["weights"] == straight["weights"]  # same data order and dropout draws after the resume
    other = _run(script, "--output_dir", tmp_path / "other", "--max_train_steps", 6, "--seed", 1)
    assert other["weights"] != straight["weights"]  # the equality above is not vacuous


def test_bad_option_values_stop_before_training(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), "--output_dir", str(tmp_path / "x"), "--checkpointing_steps",
                           "-1"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "--checkpointing_steps" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


def test_resolve_resume_and_prune(tmp_path):
    assert resolve_resume(tmp_path, None) is None
    assert resolve_resume(tmp_path, "latest") is None  # nothing yet: a new run
    for step in (3, 10, 7):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "training_state.json").write_text(json.dumps({"step": step}))
    (tmp_path / "checkpoint-12").mkdir()  # no training state: an incomplete folder is not a checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 7, 10]
    assert resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-10"
    prune_checkpoints(tmp_path, 2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [7, 10]


def test_ema_average_and_swap():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.5))
    ema.store(model)
    ema.copy_to(model)
    assert torch.allclose(model.weight, torch.full((1, 2), 0.5))
    ema.restore(model)
    assert torch.allclose(model.weight, torch.ones(1, 2))
    with pytest.raises(RuntimeError):
        ema.restore(model)


def test_sampler_is_a_function_of_the_step_and_splits_ranks():
    a = StepBatchSampler(100, 8, seed=3)
    b = StepBatchSampler(100, 8, seed=3, start_step=5)
    assert a.indices(5, 0) == b.indices(5, 0)
    assert a.indices(5, 0) != a.indices(6, 0)
    r0 = StepBatchSampler(100, 8, rank=0, world_size=2, seed=3).indices(0, 0)
    r1 = StepBatchSampler(100, 8, rank=1, world_size=2, seed=3).indices(0, 0)
    assert not set(r0) & set(r1) and len(r0) == len(r1) == 8
    assert step_seed(0, 1, 0) != step_seed(0, 0, 1) != step_seed(1, 0, 0)


def test_stats_average_what_was_reported_since_the_last_collect():
    stats = StepStats()
    stats.report("loss", torch.tensor([1.0, 3.0]))
    stats.report("loss", 2.0)
    assert stats.collect() == {"loss": pytest.approx(2.0)}
    stats.report("loss", 5.0)
    assert stats.collect() == {"loss": pytest.approx(5.0)}
