"""Learning-rate schedules: a linear warm-up, then constant, linear decay to 0, or halving."""

from __future__ import annotations

from typing import Callable

SCHEDULES = ("linear", "constant", "step")


def lr_lambda(kind: str, warmup_steps: int, total_steps: int, step_size: int | None = None) -> Callable[[int], float]:
    """The factor of the base learning rate at scheduler step ``s`` (for ``LambdaLR``).

    Warm-up: ``(s + 1) / warmup_steps`` for ``s < warmup_steps``. Then ``"constant"``: 1;
    ``"linear"``: ``(total_steps - s) / (total_steps - warmup_steps)``, reaching 0 at
    ``total_steps``; ``"step"``: halved every ``step_size`` steps (default ``total_steps // 4``).
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose from {', '.join(SCHEDULES)}")
    warmup = max(0, warmup_steps)
    period = step_size or max(1, total_steps // 4)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        if kind == "step":
            return 0.5 ** ((step - warmup) // period)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor
