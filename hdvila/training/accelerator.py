"""Accelerate setup shared by the training scripts: the Accelerator from the common options, the
precision a machine runs fast, the trackers with their run configuration, the time budget, and a
check that data-parallel replicas stayed identical."""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch


def report_to(args: argparse.Namespace) -> str | None:
    """``--report_to`` as Accelerate's ``log_with`` (``"none"`` or empty: no tracker)."""
    value = getattr(args, "report_to", None)
    return None if value in (None, "", "none") else value


def build_accelerator(args: argparse.Namespace, logger: logging.Logger | None = None, **kwargs: Any):
    """An ``accelerate.Accelerator`` for the common options (:func:`~hdvila.training.add_common_args`):
    ``--mixed_precision``, ``--report_to``, the project folder ``--output_dir`` with trackers in
    ``--output_dir/--logging_dir``. ``kwargs`` go to ``Accelerator`` and win (e.g. a resolved
    ``mixed_precision``, ``cpu=True``, ``gradient_accumulation_steps``).

    Also: Accelerate's per-run singletons are reset (the process group is kept), so a script's
    ``main()`` may run again in one Python process (tests, notebooks); logging is configured, with
    ``logger`` and the toolkit's messages at INFO on the main process and WARNING on the others; the
    output folder is created.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    AcceleratorState._reset_state()
    GradientState._reset_state()
    output_dir = Path(args.output_dir)
    options = dict(mixed_precision=args.mixed_precision, log_with=report_to(args),
                   project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                       logging_dir=str(output_dir / args.logging_dir)))
    accelerator = Accelerator(**{**options, **kwargs})
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    level = logging.INFO if accelerator.is_main_process else logging.WARNING
    for log in (logger, logging.getLogger("hdvila.training")):
        if log is not None:
            log.setLevel(level)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions and matmuls natively (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_mixed_precision(requested: str, cuda: bool) -> str:
    """The Accelerate ``mixed_precision`` to train with: ``requested`` where this machine runs it
    fast, else ``"no"`` with a warning (fp16 autocast needs CUDA; bf16 on CPU needs oneDNN's native
    bf16 kernels, without which it is slower than float32)."""
    if requested == "no" or cuda:
        return requested
    if requested == "bf16" and cpu_has_native_bf16():
        return requested
    why = "needs CUDA" if requested == "fp16" else "needs a CPU with native bf16 kernels (AVX512-BF16 or AMX)"
    warnings.warn(f"--mixed_precision {requested} {why}; training in float32.", stacklevel=2)
    return "no"


def tracker_config(args: argparse.Namespace | dict[str, Any]) -> dict[str, Any]:
    """The run configuration for trackers: numbers, strings and booleans as they are, everything
    else (None, lists, paths) as its ``str`` (trackers such as tensorboard's hparams take scalars only)."""
    items = vars(args) if isinstance(args, argparse.Namespace) else args
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in items.items()}


def init_trackers(accelerator, project_name: str, args: argparse.Namespace) -> None:
    """Start the trackers with the run configuration (:func:`tracker_config`) and write the
    arguments to ``OUTPUT_DIR/training_args.json`` (main process)."""
    from hdvila.atomic import atomic_write_text

    if accelerator.is_main_process:
        plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
        atomic_write_text(Path(args.output_dir) / "training_args.json", json.dumps(plain, indent=2, default=str))
    accelerator.init_trackers(project_name, config=tracker_config(args))


class TimeBudget:
    """``--max_train_minutes``: :meth:`expired` turns True once the minutes have passed since
    construction (create it where the training loop starts), on every process at the same call."""

    def __init__(self, minutes: float | None):
        self.minutes = minutes
        self.deadline = time.monotonic() + 60.0 * minutes if minutes else None

    def expired(self, accelerator=None) -> bool:
        """True when the budget is spent on any process (a collective call when several run)."""
        if self.deadline is None:
            return False
        late = time.monotonic() > self.deadline
        if accelerator is not None and accelerator.num_processes > 1:
            flag = torch.tensor([float(late)], device=accelerator.device)
            late = float(accelerator.reduce(flag, reduction="sum")) > 0
        return late


def assert_replicas_equal(accelerator, modules: Iterable[torch.nn.Module]) -> None:
    """Raise if the parameters of ``modules`` differ between processes (a data-parallel self-check:
    DDP must keep every replica identical). Does nothing with one process."""
    if accelerator.num_processes == 1:
        return
    sums = torch.stack([torch.stack([p.detach().double().sum() for p in m.parameters()]).sum() for m in modules])
    gathered = accelerator.gather(sums[None])
    if not bool((gathered == gathered[0]).all()):
        raise RuntimeError(f"model replicas differ across processes (parameter sums {gathered.tolist()})")
