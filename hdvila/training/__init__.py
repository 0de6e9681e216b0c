"""What every training script shares, as diffusers keeps ``training_utils`` beside its example
scripts: the common Accelerate options, atomic checkpoints with their training state, an EMA, a
step-deterministic sampler and per-step seeds, statistics averaged at log time, the time budget.

A training script on this toolkit (the skeleton of ``hdvila/train.py`` and
``generation/train_stylegan2.py``)::

    p = argparse.ArgumentParser(); add_common_args(p, max_train_steps=1000); args = p.parse_args()
    accelerator = build_accelerator(args, logger)
    model, opt = accelerator.prepare(model, opt); ema, stats = EMA(model), StepStats()
    step = 0
    if (resume := resolve_resume(args.output_dir, args.resume_from_checkpoint)) is not None:
        step = load_checkpoint(accelerator, resume)["step"]
    batches = iter(DataLoader(data, batch_sampler=StepBatchSampler(len(data), 16, seed=args.seed, start_step=step)))
    budget = TimeBudget(args.max_train_minutes)
    while step < args.max_train_steps:
        torch.manual_seed(step_seed(args.seed, step, accelerator.process_index))
        loss = stats.report("loss", model(next(batches))); accelerator.backward(loss.mean())
        opt.step(); opt.zero_grad()
        ema.update(model); step += 1; accelerator.log(stats.collect(accelerator), step=step)
        if step % args.checkpointing_steps == 0 or budget.expired(accelerator):
            save_checkpoint(accelerator, args.output_dir, step, {}, args.checkpoints_total_limit)

``tests/test_training_toolkit.py`` runs such a script for 4 steps, resumes it, and checks the folders.
"""

from hdvila.training.accelerator import (
    TimeBudget,
    assert_replicas_equal,
    build_accelerator,
    cpu_has_native_bf16,
    init_trackers,
    report_to,
    resolve_mixed_precision,
    tracker_config,
)
from hdvila.training.args import add_common_args, add_old_spelling, at_least, run_cli
from hdvila.training.checkpoints import (
    STATE_FILE,
    checkpoint_dir,
    list_checkpoints,
    load_checkpoint,
    load_training_state,
    prune_checkpoints,
    resolve_resume,
    save_checkpoint,
)
from hdvila.training.ema import EMA, EMA_FOLDER, GENERATOR_EMA_FOLDER
from hdvila.training.loop import end_of_step
from hdvila.training.sampling import EpochShuffle, StepBatchSampler, batch_positions, step_seed
from hdvila.training.schedules import SCHEDULES, lr_lambda
from hdvila.training.stats import StepStats

__all__ = [
    "EMA", "EMA_FOLDER", "GENERATOR_EMA_FOLDER", "SCHEDULES", "STATE_FILE", "EpochShuffle", "StepBatchSampler",
    "StepStats", "TimeBudget", "add_common_args", "add_old_spelling", "assert_replicas_equal", "at_least",
    "batch_positions", "build_accelerator", "checkpoint_dir", "cpu_has_native_bf16", "end_of_step", "init_trackers",
    "list_checkpoints", "load_checkpoint", "load_training_state", "lr_lambda", "prune_checkpoints", "report_to",
    "resolve_mixed_precision", "resolve_resume", "run_cli", "save_checkpoint", "step_seed", "tracker_config",
]
