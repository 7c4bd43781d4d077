"""Duration strings as QStash reads them: `10s`, `1m`, `1h30m3s`, `1d10h`, and Go's `500ms`.

`Upstash-Delay`, `Upstash-Timeout` and the flow-control `period` use `<number><unit>` groups with units
s, m, h, d (reference §2, §5.1); `Retry-After` also takes Go durations with ns, us, µs and ms
(upstash/docs qstash/features/retry.mdx). A bare integer means seconds, as the SDK's int-to-`"{n}s"`
convention implies.
"""

from __future__ import annotations

import re

_UNIT_MS: dict[str, float] = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}
_GROUP = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_BARE_SECONDS = re.compile(r"\d+")
# Longer than any real QStash delay (plan maximums are days); past it a value is a typo or an attack.
MAX_DURATION_MS = 366 * 86_400_000.0


def parse_duration_ms(text: str) -> float:
    """Milliseconds in `text`; ValueError if it is not a duration or exceeds MAX_DURATION_MS."""
    text = text.strip()
    if _BARE_SECONDS.fullmatch(text):
        return _bounded(int(text) * 1000.0, text)
    total_ms = 0.0
    position = 0
    for group in _GROUP.finditer(text):
        if group.start() != position:
            break
        total_ms += float(group.group(1)) * _UNIT_MS[group.group(2)]
        position = group.end()
    if position == 0 or position != len(text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 10s, 1m, 1h30m, 1d)")
    return _bounded(total_ms, text)


def _bounded(ms: float, text: str) -> float:
    if ms > MAX_DURATION_MS:
        raise ValueError(f"duration {text!r} is longer than a year")
    return ms
