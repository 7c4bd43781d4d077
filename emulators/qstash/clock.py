"""The emulator's clock, which tests can move forward, and the time scale for delays.

Every stored time (createdAt, notBefore, due times, cron ticks, the deduplication window) is read from
`EmulatorClock`: real wall time plus an offset that `POST /__clock/advance` grows. Signatures are the
exception: their `iat`/`nbf` must match the verifier's real clock (reference §6.2), so delivery signs
with real time.

`TimeScale` multiplies waits the emulator chooses or is asked for (Upstash-Delay, the rest of an
Upstash-Not-Before, retry backoffs, Retry-After, flow-control rate periods) so tests run in
milliseconds. Cron ticks and the deduplication window follow the clock, unscaled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> float: ...


class EmulatorClock:
    def __init__(self) -> None:
        self.offset_ms = 0.0

    def now_ms(self) -> float:
        return time.time() * 1000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += seconds * 1000


@dataclass(frozen=True, slots=True)
class TimeScale:
    factor: float = 1.0

    def wait_ms(self, requested_ms: float) -> float:
        return max(0.0, requested_ms) * self.factor
