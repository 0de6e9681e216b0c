"""Training checkpoints: ``OUTPUT_DIR/checkpoint-{step}/`` folders of ``accelerator.save_state``.

A checkpoint holds what Accelerate saves (models, optimisers, schedulers, RNG states of every
process) plus ``training_state.json``: the step and whatever counters the script keeps. It is
written into a temporary folder beside its final name and renamed only when complete (the main
process renames after every process has written its files), so a crash never leaves a half
checkpoint under a checkpoint's name. A checkpoint is *complete* when its ``training_state.json``
reads as a JSON object with a ``step``; only complete checkpoints are listed, resumed from or counted
by ``--checkpoints_total_limit``, and their step is the one in that file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from hdvila.errors import UserError

logger = logging.getLogger("hdvila.training")

STATE_FILE = "training_state.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | os.PathLike, step: int) -> Path:
    """``output_dir/checkpoint-{step}``."""
    return Path(output_dir) / f"checkpoint-{step}"


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    step = raw.get("step", raw.get("global_step"))  # "global_step": checkpoints of earlier versions
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return None
    return {**raw, "step": step}


def load_training_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``training_state.json`` of a checkpoint folder as a dict (always with an int ``step``).

    Raises :class:`~hdvila.errors.UserError` when the folder is not a complete checkpoint.
    """
    folder = Path(folder)
    state = _read_state(folder)
    if state is None:
        why = "is missing" if not (folder / STATE_FILE).is_file() else "is not a valid training state"
        raise UserError(f"{folder} is not a complete checkpoint: {folder / STATE_FILE} {why}. Pick another "
                        f"checkpoint folder, or --resume_from_checkpoint latest.")
    return state


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the complete ``checkpoint-*`` folders in ``output_dir``, oldest first.

    Temporary folders of a save in progress or of a crashed one (``.tmp-checkpoint-*``) and folders
    without a readable training state are left out."""
    root = Path(output_dir)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if CHECKPOINT_RE.match(child.name) and child.is_dir():
                state = _read_state(child)
                if state is not None:
                    found.append((state["step"], child))
    return sorted(found)


def prune_checkpoints(output_dir: str | os.PathLike, total_limit: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most ``total_limit`` remain (None: keep
    all); returns the deleted folders."""
    if total_limit is None:
        return []
    if total_limit < 1:
        raise ValueError(f"total_limit must be >= 1, got {total_limit}")
    removed = [folder for _, folder in list_checkpoints(output_dir)[:-total_limit]]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def resolve_resume(output_dir: str | os.PathLike, spec: str | os.PathLike | None) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint spec`` names, or None for a new run.

    ``"latest"``: the newest complete checkpoint in ``output_dir`` (None if there is none). A path
    is taken as it is, else relative to ``output_dir``; it must be a complete checkpoint, or a
    :class:`~hdvila.errors.UserError` says what is wrong.
    """
    if not spec:
        return None
    output_dir = Path(output_dir)
    if str(spec) == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            logger.info("no checkpoint in %s; starting a new run", output_dir)
            return None
        return found[-1][1]
    path = Path(spec)
    if not path.exists() and (output_dir / path).exists():
        path = output_dir / path
    if not path.is_dir():
        raise UserError(f"--resume_from_checkpoint {spec}: no such checkpoint folder (looked in the current "
                        f"folder and in {output_dir}).")
    load_training_state(path)
    return path


def _broadcast_path(accelerator, path: Path | None) -> Path:
    """The main process's ``path`` on every process."""
    if accelerator.num_processes == 1:
        assert path is not None
        return path
    from accelerate.utils import broadcast_object_list

    return Path(broadcast_object_list([str(path) if path is not None else None])[0])


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, training_state: dict[str, Any],
                    total_limit: int | None = None, *, extra: Callable[[Path], None] | None = None,
                    **save_state_kwargs: Any) -> Path:
    """Write ``output_dir/checkpoint-{step}`` atomically; every process must call it.

    ``accelerator.save_state`` writes into a temporary folder (:func:`hdvila.atomic.atomic_dir`
    on the main process); the main process adds ``training_state.json`` (``training_state`` with
    ``"step": step``) and what ``extra(folder)`` writes (e.g. an EMA model folder), and renames the
    folder once every process has written its files. A checkpoint of the same step is replaced.
    Then the oldest checkpoints beyond ``total_limit`` are deleted. Weights are saved as dense
    row-major tensors (channels-last ones included; safetensors stores no other layout).
    ``save_state_kwargs`` go to ``save_state`` (e.g. ``safe_serialization=False``).
    Returns the checkpoint folder.
    """
    from hdvila.atomic import atomic_dir, atomic_write_text

    final = checkpoint_dir(output_dir, step)
    state = {**training_state, "step": int(step)}
    text = json.dumps(state, indent=2)  # fails before anything is written if the state is not JSON

    def dense(models, weights, folder):
        weights[:] = [{k: v.contiguous() for k, v in w.items()} for w in weights]

    handle = accelerator.register_save_state_pre_hook(dense)
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_dir(final)) if accelerator.is_main_process else None
            tmp = _broadcast_path(accelerator, tmp)
            accelerator.save_state(str(tmp), **save_state_kwargs)
            if accelerator.is_main_process:
                if extra is not None:
                    extra(tmp)
                atomic_write_text(tmp / STATE_FILE, text)
            accelerator.wait_for_everyone()  # all files are in before the main process renames
        accelerator.wait_for_everyone()
    finally:
        handle.remove()
    if accelerator.is_main_process:
        prune_checkpoints(output_dir, total_limit)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: str | os.PathLike) -> dict[str, Any]:
    """``accelerator.load_state(folder)`` (models, optimisers, schedulers, RNG states) and the
    checkpoint's training state (:func:`load_training_state`)."""
    state = load_training_state(folder)
    logger.info("resuming from %s (step %d)", folder, state["step"])
    accelerator.load_state(str(folder))
    return state
