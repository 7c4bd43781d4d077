"""The due-time heap: delayed messages, retries and schedule ticks, fired by one `loop.call_later` timer.

There is no polling task: the timer is armed for the earliest entry and re-armed when an earlier one
arrives. `fire_due()` also runs after the clock is advanced, so whatever became due fires at once.
Entries are never removed; an entry whose subject changed (cancelled, re-timed, deleted) is recognised
as stale by the callback and ignored.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from emulators.qstash.clock import Clock

DueKind = Literal["message", "schedule"]
log = logging.getLogger("emulators.qstash")


@dataclass(frozen=True, slots=True)
class Due:
    kind: DueKind
    key: str  # message id or schedule id
    due_ms: float


class Timeline:
    def __init__(self, clock: Clock, on_due: Callable[[Due], None]) -> None:
        self._clock = clock
        self._on_due = on_due
        self._heap: list[tuple[float, int, Due]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at_ms: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: Due) -> None:
        heapq.heappush(self._heap, (due.due_ms, next(self._order), due))
        if self._timer_at_ms is None or due.due_ms < self._timer_at_ms:
            self._arm()

    def fire_due(self) -> int:
        """Fire every entry due by now (entries added meanwhile included); returns how many fired."""
        fired = 0
        while self._heap and self._heap[0][0] <= self._clock.now_ms():
            _, _, due = heapq.heappop(self._heap)
            fired += 1
            try:
                self._on_due(due)
            except Exception:  # one broken entry must not stop the timer for every other one
                log.exception("handling a due %s failed", due.kind)
        self._arm()
        return fired

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at_ms = None, None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._heap:
            self._timer, self._timer_at_ms = None, None
            return
        due_ms = self._heap[0][0]
        loop = asyncio.get_running_loop()
        delay_s = max(0.0, due_ms - self._clock.now_ms()) / 1000
        self._timer = loop.call_later(delay_s, self._on_timer)
        self._timer_at_ms = due_ms

    def _on_timer(self) -> None:
        self._timer, self._timer_at_ms = None, None
        self.fire_due()
