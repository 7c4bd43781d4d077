"""`Upstash-Flow-Control-Value`: `parallelism=3, rate=4, period=2s` (reference §2, G17).

Names are case-insensitive (the docs write `Rate=10`), separators are commas with optional spaces, the
period is a duration (an int means seconds) of at most a week and defaults to 1 s (SDK docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulators.qstash.durations import parse_duration_ms

MAX_PERIOD_S = 7 * 86_400


@dataclass(frozen=True, slots=True)
class FlowControlSpec:
    key: str
    parallelism: int | None = None
    rate: int | None = None
    period_s: int = 1


def parse_flow_control(key: str, value: str) -> FlowControlSpec:
    parallelism: int | None = None
    rate: int | None = None
    period_s = 1
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, equals, text = (s.strip() for s in part.partition("="))
        name = name.lower()
        if not equals or not text:
            raise ValueError(f"{part!r} is not name=value")
        if name == "parallelism":
            parallelism = _positive(text, name)
        elif name == "rate":
            rate = _positive(text, name)
        elif name == "period":
            period_s = _period(text)
        else:
            raise ValueError(f"unknown setting {name!r} (parallelism, rate, period)")
    return FlowControlSpec(key, parallelism, rate, period_s)


def _positive(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1 or len(text) > 9:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


def _period(text: str) -> int:
    seconds = parse_duration_ms(text) / 1000
    if not 1 <= seconds <= MAX_PERIOD_S:
        raise ValueError(f"period must be from 1s to 7d, got {text!r}")
    return int(seconds)
