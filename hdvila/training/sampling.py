"""Step-deterministic data order and per-step seeding.

Which samples a process reads at a training step is a pure function of ``(seed, step)``: a run
resumed from a checkpoint reads exactly what an uninterrupted run would (there is no sampler state
to save), and any number of DataLoader workers may build the batches.

The stream of samples is cut into micro-batches. Micro-batch ``m`` of the run (``m = step *
accumulation + k`` for the ``k``-th micro-batch of a step) of process ``rank`` of ``world_size``
covers the global sample positions ``[(m * world_size + rank) * B, ... + B)``: the processes of
one micro-batch read neighbouring slices, and no position is read twice. A position becomes an item
index through :class:`EpochShuffle`: epoch ``e`` of the stream is a permutation of the data set
drawn from ``(seed, e)``, so every epoch visits every item once.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The torch seed of training step ``step`` on process ``rank``: a 63-bit integer that differs
    for every ``(seed, step, rank)``. Seed the step's randomness (``torch.manual_seed``) with it, and a
    resumed run draws what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0]) >> 1


def batch_positions(micro_batch: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> range:
    """Global sample positions of micro-batch ``micro_batch`` (counted over the whole run) of process
    ``rank``: ``batch_size`` consecutive positions (module docstring)."""
    start = (micro_batch * world_size + rank) * batch_size
    return range(start, start + batch_size)


class EpochShuffle:
    """Item index at a global sample position of a stream over ``num_items`` items.

    Epoch ``e`` (positions ``e * num_items`` to ``(e + 1) * num_items - 1``) is the permutation drawn
    from ``numpy.random.default_rng([seed, e])``, or ``[seed, stream, e]`` when a ``stream`` number
    is given (several independent streams of one seed, e.g. videos and images).
    """

    def __init__(self, num_items: int, seed: int = 0, stream: int | None = None, cache: int = 4):
        if num_items < 1:
            raise ValueError("the data set is empty")
        self.num_items, self.cache = num_items, cache
        self._key = [seed] if stream is None else [seed, stream]
        self._perms: dict[int, np.ndarray] = {}

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_items)
        perm = self._perms.get(epoch)
        if perm is None:
            if len(self._perms) >= self.cache:  # positions move forward: old epochs are not read again
                self._perms.clear()
            perm = self._perms[epoch] = np.random.default_rng([*self._key, epoch]).permutation(self.num_items)
        return int(perm[offset])


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for steps ``start_step, start_step + 1, ...``, the ``accumulation`` micro-batches of
    ``batch_size`` item indices that process ``rank`` of ``world_size`` reads in that step (module
    docstring). Infinite: the training loop stops by counting steps. Use it as a DataLoader's
    ``batch_sampler``."""

    def __init__(self, num_items: int, batch_size: int, *, accumulation: int = 1, rank: int = 0,
                 world_size: int = 1, seed: int = 0, start_step: int = 0):
        if batch_size < 1 or accumulation < 1:
            raise ValueError(f"need batch_size >= 1 and accumulation >= 1, got {batch_size}, {accumulation}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.order = EpochShuffle(num_items, seed)
        self.num_items, self.batch_size, self.accumulation = num_items, batch_size, accumulation
        self.rank, self.world_size, self.seed, self.start_step = rank, world_size, seed, start_step

    def indices(self, step: int, micro: int) -> list[int]:
        """Item indices of micro-batch ``micro`` of step ``step`` for this process."""
        positions = batch_positions(step * self.accumulation + micro, self.batch_size, rank=self.rank,
                                    world_size=self.world_size)
        return [self.order[p] for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            for micro in range(self.accumulation):
                yield self.indices(step, micro)
            step += 1
