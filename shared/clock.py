"""Where a decision's time comes from.

One clock per decision: a Lua script reads Redis `TIME` once, returns the time it used, and every
header, expiry and key derived from that decision uses that returned time, never the function's own
wall clock. Function instances then agree however far their clocks drift apart.

    RedisClock()       the default: the script reads Redis TIME (one clock for every instance)
    ManualClock(ms)    a clock a test or benchmark moves itself: `advance(s)`, and `sleep` that
                       advances instead of waiting, so nothing in a test sleeps for real

Durations measured inside one process (how long to keep a cached block, how long a caller has
waited) need no shared clock and use `time.monotonic()`, which no clock adjustment moves.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def script_now_ms(self) -> int | None:
        """The time a script should use, in epoch milliseconds, or None to let it read Redis TIME."""
        ...


class RedisClock:
    """Redis TIME decides: the script reads it (no extra round trip)."""

    def script_now_ms(self) -> None:
        return None

    def __repr__(self) -> str:
        return "RedisClock()"


class ManualClock:
    """A clock that moves only when told to: for tests and benchmarks of time-dependent behaviour."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def script_now_ms(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        """A stand-in for `asyncio.sleep` that moves this clock instead of waiting."""
        self.advance(seconds)

    def __repr__(self) -> str:
        return f"ManualClock({self.now_ms})"
