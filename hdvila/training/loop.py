"""The tail of an optimiser step shared by the generation training scripts (``train_sr.py``,
``train_encoder.py``, ``train_mapper.py``): logs, the time budget, checkpoints and validation, in
diffusers' example-script order."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any, Callable, Iterable

import torch


def end_of_step(accelerator, args: argparse.Namespace, step: int, *, bar, stats, budget,
                replicas: Iterable[torch.nn.Module], seen_key: str, save_extra: Callable | None,
                validate: Callable[[], dict[str, float]], logger: logging.Logger,
                precision: int = 2) -> tuple[bool, dict[str, float] | None]:
    """Run after ``step`` (already counted) of a script on :func:`hdvila.training.add_common_args`:

    - advance the progress bar and log the statistics reported since the last step;
    - stop when ``--max_train_steps`` is reached or ``--max_train_minutes`` (``budget``) is spent;
    - every ``--checkpointing_steps`` and at the stop, check that the ``replicas`` agree across
      processes and save a checkpoint whose training state counts ``seen_key`` (samples seen by all
      processes), with ``save_extra(folder)`` writing what else belongs in it (e.g. the EMA model);
    - on the main process, every ``--validation_steps`` and at the stop, call ``validate()`` and log it.

    Returns (stop, the validation result when it ran, else None).
    """
    from hdvila.training.accelerator import assert_replicas_equal
    from hdvila.training.checkpoints import save_checkpoint

    bar.update(1)
    logs = stats.collect(accelerator)
    accelerator.log(logs, step=step)
    bar.set_postfix(loss=f"{logs.get('loss', math.nan):.4f}")
    out_of_time = budget.expired(accelerator)
    done = step >= args.max_train_steps or out_of_time
    if args.checkpointing_steps and (step % args.checkpointing_steps == 0 or done):
        assert_replicas_equal(accelerator, list(replicas))
        seen = step * args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        save_checkpoint(accelerator, args.output_dir, step, {seen_key: seen}, args.checkpoints_total_limit,
                        extra=save_extra)
    result: dict[str, Any] | None = None
    if accelerator.is_main_process and ((args.validation_steps and step % args.validation_steps == 0) or done):
        result = validate()
        accelerator.log(result, step=step)
        logger.info("step %d: %s", step, ", ".join(f"{k} {v:.{precision}f}" for k, v in result.items()))
    if out_of_time:
        logger.info("--max_train_minutes %s spent at step %d", args.max_train_minutes, step)
    return done, result
