"""Flow-control keys: per-key parallelism and rate limits over attempts (upstash/docs
qstash/features/flowcontrol.mdx and the openapi Flow Control section).

Each new message carrying a key sets that key's configuration, unless the parallelism or the rate is
pinned with `POST /v2/flowControl/{key}/pin`. Pinning resets the rate state. A paused key admits
nothing; its waiting messages stay in the wait list. The rate period is time-scaled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from emulators.qstash.clock import Clock, TimeScale
from emulators.qstash.flow_spec import FlowControlSpec
from emulators.qstash.gates import Gate
from emulators.qstash.model import Message


class FlowControlInfoJson(TypedDict):
    flowControlKey: str
    waitListSize: int
    parallelismMax: int
    parallelismCount: int
    rateMax: int
    rateCount: int
    ratePeriod: int
    ratePeriodStart: int
    isPaused: bool
    isPinnedParallelism: bool
    isPinnedRate: bool


@dataclass(slots=True, eq=False)
class FlowControlKey:
    key: str
    gate: Gate[Message]
    period_s: int = 1
    pinned_parallelism: bool = False
    pinned_rate: bool = False


class FlowControls:
    def __init__(self, clock: Clock, scale: TimeScale, admit: Callable[[Message], None]) -> None:
        self._clock = clock
        self._scale = scale
        self._admit = admit
        self.keys: dict[str, FlowControlKey] = {}

    def get(self, key: str) -> FlowControlKey | None:
        return self.keys.get(key)

    def ensure(self, key: str) -> FlowControlKey:
        found = self.keys.get(key)
        if found is None:
            found = self.keys[key] = FlowControlKey(key, Gate(self._admit, self._clock))
        return found

    def configure(self, spec: FlowControlSpec) -> FlowControlKey:
        """The key a new message uses, updated with the message's settings where not pinned."""
        entry = self.ensure(spec.key)
        if not entry.pinned_parallelism:
            entry.gate.parallelism = spec.parallelism
        if not entry.pinned_rate:
            entry.gate.rate = spec.rate
            self._set_period(entry, spec.period_s)
        return entry

    def pin(self, entry: FlowControlKey, parallelism: int | None, rate: int | None, period_s: int | None) -> None:
        if parallelism is not None:
            entry.gate.parallelism, entry.pinned_parallelism = parallelism, True
        if rate is not None:
            entry.gate.rate, entry.pinned_rate = rate, True
        if period_s is not None:
            self._set_period(entry, period_s)
            entry.pinned_rate = True
        entry.gate.reset_rate()

    def unpin(self, entry: FlowControlKey, parallelism: bool, rate: bool) -> None:
        entry.pinned_parallelism = entry.pinned_parallelism and not parallelism
        entry.pinned_rate = entry.pinned_rate and not rate

    def pump_all(self) -> None:
        for entry in self.keys.values():
            entry.gate.pump()

    def close(self) -> None:
        for entry in self.keys.values():
            entry.gate.close()

    def _set_period(self, entry: FlowControlKey, period_s: int) -> None:
        entry.period_s = period_s
        # A zero-length window would admit without limit; keep a 1 ms floor under extreme scales.
        entry.gate.period_ms = max(1.0, self._scale.wait_ms(period_s * 1000.0))

    def info_json(self, entry: FlowControlKey) -> FlowControlInfoJson:
        gate = entry.gate
        window_open = self._clock.now_ms() < gate.window_start_ms + gate.period_ms
        return {
            "flowControlKey": entry.key,
            "waitListSize": gate.wait_list_size,
            "parallelismMax": gate.parallelism or 0,
            "parallelismCount": gate.in_flight,
            "rateMax": gate.rate or 0,
            "rateCount": gate.rate_count if window_open and gate.rate is not None else 0,
            "ratePeriod": entry.period_s,
            "ratePeriodStart": int(gate.window_start_ms // 1000),
            "isPaused": gate.paused,
            "isPinnedParallelism": entry.pinned_parallelism,
            "isPinnedRate": entry.pinned_rate,
        }
