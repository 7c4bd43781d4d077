"""Test and benchmark controls, not part of QStash; they take the same bearer token.

POST /__clock/advance {"seconds": N}  move the clock forward N seconds and fire what became due
                                      (cron ticks, delayed messages, retries); returns the clock
GET  /__clock                         {"nowMs", "offsetMs"}
GET  /__stats                         counters: published, delivered, retried, dlq, ...
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest

MAX_ADVANCE_S = 10 * 366 * 86_400


def _clock(emulator: Emulator, fired: int | None = None) -> Reply:
    payload: dict[str, Any] = {"nowMs": int(emulator.clock.now_ms()), "offsetMs": int(emulator.clock.offset_ms)}
    if fired is not None:
        payload["fired"] = fired
    return Reply(200, payload)


def advance_clock(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    payload = request.json()
    seconds = payload.get("seconds") if isinstance(payload, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise _bad_advance()
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_ADVANCE_S):
        raise _bad_advance()
    return _clock(emulator, emulator.advance_clock(float(seconds)))


def _bad_advance() -> BadRequest:
    return BadRequest(f'the body must be {{"seconds": N}} with 0 <= N <= {MAX_ADVANCE_S}')


def get_clock(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return _clock(emulator)


def stats(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    counters: dict[str, Any] = dataclasses.asdict(emulator.store.stats)
    counters["inFlight"] = emulator.in_flight
    counters["pending"] = len(emulator.store.pending_messages())
    counters["dlqSize"] = len(emulator.store.dlq)
    return Reply(200, counters)


ROUTES = [
    Route.of("POST", r"/__clock/advance", advance_clock),
    Route.of("GET", r"/__clock", get_clock),
    Route.of("GET", r"/__stats", stats),
]
