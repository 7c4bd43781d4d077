"""FIFO admission with an optional parallelism limit, rate per period, and pause.

One Gate class serves three limits: a queue (parallelism, pause; a message holds its slot from its
first attempt until it is delivered or failed, so the next one waits for its retries: upstash/docs
qstash/features/queues.mdx), a flow-control key (parallelism and rate per attempt), and the server-wide
cap on concurrent deliveries. A message waits in `waiting` until the gate has room, then `admit` is
called with it; whoever admitted it calls `release()` when it gives the slot back.

Messages cancelled while waiting stay in the deque and are skipped when they reach its head, so a
cancel is O(1).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from emulators.qstash.clock import Clock


class Waiter(Protocol):
    @property
    def is_pending(self) -> bool: ...


class Gate[T: Waiter]:
    def __init__(
        self,
        admit: Callable[[T], None],
        clock: Clock,
        parallelism: int | None = None,
        rate: int | None = None,
        period_ms: float = 1000.0,
    ) -> None:
        self._admit = admit
        self._clock = clock
        self.parallelism = parallelism
        self.rate = rate
        self.period_ms = period_ms  # already time-scaled: real milliseconds of emulator clock
        self.paused = False
        self.in_flight = 0
        self.rate_count = 0
        self.window_start_ms = clock.now_ms()
        self.waiting: deque[T] = deque()
        self._rate_timer: asyncio.TimerHandle | None = None

    @property
    def wait_list_size(self) -> int:
        return sum(1 for item in self.waiting if item.is_pending)

    def offer(self, item: T, front: bool = False) -> None:
        if front:
            self.waiting.appendleft(item)
        else:
            self.waiting.append(item)
        self.pump()

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.pump()

    def reset_rate(self) -> None:
        self.rate_count = 0
        self.window_start_ms = self._clock.now_ms()
        self.pump()

    def pump(self) -> None:
        """Admit waiting items, oldest first, while there is room."""
        while self.waiting:
            if not self.waiting[0].is_pending:
                self.waiting.popleft()
                continue
            if not self._has_room():
                return
            item = self.waiting.popleft()
            self.in_flight += 1
            self.rate_count += 1
            self._admit(item)

    def _has_room(self) -> bool:
        if self.paused:
            return False
        if self.parallelism is not None and self.in_flight >= self.parallelism:
            return False
        if self.rate is None:
            return True
        now_ms = self._clock.now_ms()
        if now_ms >= self.window_start_ms + self.period_ms:
            self.window_start_ms, self.rate_count = now_ms, 0
        if self.rate_count < self.rate:
            return True
        self._wake_at_window_end(self.window_start_ms + self.period_ms - now_ms)
        return False

    def _wake_at_window_end(self, delay_ms: float) -> None:
        if self._rate_timer is not None and not self._rate_timer.cancelled():
            return
        loop = asyncio.get_running_loop()
        self._rate_timer = loop.call_later(max(0.0, delay_ms) / 1000, self._on_window_end)

    def _on_window_end(self) -> None:
        self._rate_timer = None
        self.pump()

    def close(self) -> None:
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None
