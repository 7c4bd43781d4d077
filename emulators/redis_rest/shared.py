"""Counters every worker of one gateway adds to and any worker reads in total (`--workers N`).

One anonymous shared mapping, created by the parent before it forks the workers, holds a row of int64
counters per worker. A worker adds to its own row only, so no lock is needed (one writer per slot; an
aligned 8-byte store is never seen half-written on the platforms we run), and a reader sums the rows.
With one worker the same code runs on a private row: the hot path does not depend on the count.
"""

from __future__ import annotations

import mmap


class SharedCounters:
    def __init__(self, size: int, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.size = size
        self.workers = workers
        # mmap(-1, n) is MAP_SHARED | MAP_ANONYMOUS: children forked after this see the same pages.
        self._mapping = mmap.mmap(-1, size * workers * 8)
        self._all = memoryview(self._mapping).cast("q")
        self.worker = 0
        self.row = self._all[:size]

    def use_row(self, worker: int) -> None:
        """Called once in each forked worker: from now on this process adds to row `worker`."""
        self.worker = worker
        self.row = self._all[worker * self.size : (worker + 1) * self.size]

    def rows(self, start: int, stop: int) -> list[list[int]]:
        """Slots [start, stop) of every worker's row."""
        return [self._all[w * self.size + start : w * self.size + stop].tolist() for w in range(self.workers)]

    def totals(self, start: int, stop: int) -> list[int]:
        """Slots [start, stop) summed over the workers."""
        return [sum(column) for column in zip(*self.rows(start, stop), strict=True)]
