"""The command-line options every training script shares (diffusers' example-script names).

:func:`add_common_args` adds them as one argument group; each script passes its own defaults.
Values are checked by argparse itself (:func:`at_least`), so a bad value stops the script with a
usage message before anything is built.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable


def at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse ``type`` that parses ``kind`` and refuses values below ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _positive_float(text: str) -> float:
    value = at_least(0.0, float)(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_common_args(parser: argparse.ArgumentParser, *, output_dir: str | None = None,
                    max_train_steps: int | None = 1000, checkpointing_steps: int = 500, validation_steps: int = 500,
                    mixed_precision: str | None = "no", title: str = "run, checkpoints and logs"
                    ) -> argparse._ArgumentGroup:
    """Add the shared training options to ``parser`` as one group; returns the group.

    ``--output_dir`` (required when ``output_dir`` is None), ``--seed``, ``--mixed_precision``
    (None: Accelerate's configuration), ``--gradient_accumulation_steps``, ``--max_train_steps``
    (None: the script derives it), ``--max_train_minutes``, ``--checkpointing_steps`` (0: never),
    ``--checkpoints_total_limit``, ``--resume_from_checkpoint latest|PATH``, ``--report_to``,
    ``--logging_dir`` (relative to the output folder), ``--validation_steps`` (0: only at the end).
    """
    g = parser.add_argument_group(title)
    g.add_argument("--output_dir", required=output_dir is None, default=output_dir,
                   help="folder for checkpoints, logs and the trained model")
    g.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data order and every step")
    g.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=mixed_precision,
                   help="autocast precision" + (" (default: Accelerate's configuration)" if mixed_precision is None
                                                else f" (default: {mixed_precision})"))
    g.add_argument("--gradient_accumulation_steps", type=at_least(1), default=1,
                   help="micro-batches per optimiser step")
    g.add_argument("--max_train_steps", type=at_least(1), default=max_train_steps,
                   help="optimiser steps; a resumed run goes on to this step")
    g.add_argument("--max_train_minutes", type=_positive_float, default=None,
                   help="also stop after this many minutes of the training loop, at a step boundary, with a "
                        "checkpoint there (when --checkpointing_steps > 0) to go on from with --resume_from_checkpoint")
    g.add_argument("--checkpointing_steps", type=at_least(0), default=checkpointing_steps,
                   help="save the training state every N steps and at the last step (0: never)")
    g.add_argument("--checkpoints_total_limit", type=at_least(1), default=None,
                   help="keep at most N checkpoints (the oldest are deleted)")
    g.add_argument("--resume_from_checkpoint", default=None,
                   help="'latest' (the newest complete checkpoint in --output_dir; a new run if there is none) "
                        "or a checkpoint folder")
    g.add_argument("--report_to", default="tensorboard", help="Accelerate tracker ('tensorboard', ..., or 'none')")
    g.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir")
    g.add_argument("--validation_steps", type=at_least(0), default=validation_steps,
                   help="validate every N steps (0: only at the end)")
    return g


def add_old_spelling(group: argparse._ActionsContainer, old: str, new: str, type: Callable[[str], Any] = int) -> None:
    """Accept option ``old`` as a hidden alias of the option ``new`` (already added, same ``type``): it
    sets the same value and is left out of ``--help``, so commands written before a rename (to the
    diffusers spelling, e.g. ``--num_workers`` -> ``--dataloader_num_workers``) keep working."""
    group.add_argument(old, dest=new.lstrip("-"), type=type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run_cli(main: Callable[[], object]) -> int:
    """Run a training script's ``main()`` from the command line: a
    :class:`~hdvila.errors.UserError` becomes one ``error: ...`` line on stderr and exit status 2,
    never a traceback. Use as ``sys.exit(run_cli(main))``."""
    import sys

    from hdvila.errors import UserError

    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
