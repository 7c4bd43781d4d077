"""What one cache entry holds, how its value is serialised, and what a lookup found.

The payload is `<FORMAT_VERSION>|<msgspec JSON>`: a compact array (value, tags) rather than a map, so no
field name is repeated in every entry. A payload of any other version is never decoded: it reads as a
miss and is overwritten, so a new deployment never misreads what an older one wrote. (JSON and not
msgpack: the REST protocol carries strings, and base64 would undo msgpack's saving.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

FORMAT_VERSION = 1
_PREFIX = f"{FORMAT_VERSION}|"
LookupState = Literal["fresh", "early", "stale", "miss"]


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    value: Any
    tags: tuple[str, ...] = ()


def encode(value: object, tags: tuple[str, ...]) -> str:
    return _PREFIX + msgspec.json.encode(Envelope(value, tags)).decode()


def decode(payload: str) -> Envelope | None:
    """The envelope, or None when the payload is absent, of another format version, or unreadable."""
    if not payload.startswith(_PREFIX):
        return None
    try:
        return msgspec.json.decode(payload[len(_PREFIX) :], type=Envelope)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One LOOKUP's answer (shared/cache/script.py), times in the script's clock."""

    state: LookupState
    now_ms: int
    won: bool  # this caller holds the refresh lease
    generation: str
    envelope: Envelope | None  # None: no entry, or one this deployment cannot read
    fresh_until_ms: int
    error_until_ms: int
    delta_ms: int
    started_us: int
    written_ms: int
    write_id: str
    now_us: int  # the lookup's own time in µs: when a computation it leads to read its inputs

    @classmethod
    def parse(cls, raw: object) -> Found:
        assert isinstance(raw, list), raw
        assert len(raw) == 13, raw
        state, now, won, generation, payload, fresh, _stale, error, delta, started, written, write_id, now_us = raw
        return cls(
            state=state,
            now_ms=int(now),
            won=int(won) == 1,
            generation=str(generation),
            envelope=decode(str(payload)) if payload else None,
            fresh_until_ms=_int(fresh),
            error_until_ms=_int(error),
            delta_ms=_int(delta),
            started_us=_int(started),
            written_ms=_int(written),
            write_id=str(write_id),
            now_us=_int(now_us),
        )

    @property
    def age_s(self) -> float:
        return max(0, self.now_ms - self.written_ms) / 1000

    @property
    def servable_on_error(self) -> bool:
        """Whether the entry may stand in for a failed recompute (stale-if-error, RFC 5861 §4)."""
        return self.envelope is not None and self.now_ms < self.error_until_ms


def _int(value: object) -> int:
    return int(float(str(value))) if value not in ("", None) else 0
