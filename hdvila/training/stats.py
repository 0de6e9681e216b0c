"""Training statistics, reported where they are computed and averaged at log time.

In the spirit of NVlabs' ``torch_utils.training_stats``: a loss or penalty is reported during the
step (``stats.report("loss_G", per_sample_loss)``, any number of times: once per micro-batch of
gradient accumulation, once per phase), and :meth:`StepStats.collect` returns the mean of every
value reported since the previous collect, over all reports, micro-batches and processes. Sums are
kept in float64 on the CPU, so a report costs one device-to-host copy and no extra graph.

Every process must report the same names (the reduction packs them into one tensor, in sorted
order); names given to the constructor are always part of it, whether reported or not.
"""

from __future__ import annotations

from typing import Iterable

import torch


class StepStats:
    """Sums and counts of reported values; ``collect`` turns them into means and starts afresh.

    After :meth:`collect`, :attr:`totals` holds ``{name: (sum, count)}`` of the collected window
    (for quantities that need the raw sum, e.g. ADA's sign statistic).
    """

    def __init__(self, names: Iterable[str] = ()):
        self._sums: dict[str, float] = {n: 0.0 for n in names}
        self._counts: dict[str, float] = {n: 0.0 for n in names}
        self.totals: dict[str, tuple[float, float]] = {}

    def report(self, name: str, values: torch.Tensor | float) -> torch.Tensor | float:
        """Add ``values`` (a tensor of any shape, each element one sample, or a number) to ``name``;
        returns ``values`` unchanged."""
        t = torch.as_tensor(values).detach().float()
        self._sums[name] = self._sums.get(name, 0.0) + float(t.sum())
        self._counts[name] = self._counts.get(name, 0.0) + t.numel()
        return values

    def collect(self, accelerator=None) -> dict[str, float]:
        """``{name: mean}`` of the values reported since the last collect, summed across the
        processes of ``accelerator`` (every process must call this at the same point); names without
        a report are left out. Resets the sums."""
        names = sorted(self._sums)
        packed = torch.tensor([v for n in names for v in (self._sums[n], self._counts[n])], dtype=torch.float64)
        if accelerator is not None and accelerator.num_processes > 1:
            packed = accelerator.reduce(packed.to(accelerator.device), reduction="sum").cpu()
        self.totals = {n: (float(packed[2 * i]), float(packed[2 * i + 1])) for i, n in enumerate(names)}
        for n in names:
            self._sums[n], self._counts[n] = 0.0, 0.0
        return {n: s / c for n, (s, c) in self.totals.items() if c > 0}
