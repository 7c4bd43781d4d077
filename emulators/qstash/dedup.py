"""Deduplication by `Upstash-Deduplication-Id` or by content, over a 10-minute window (reference §5.1).

A duplicate is accepted with HTTP 202 and the original message ids (upstash/docs
qstash/features/deduplication.mdx). The content key hashes what the docs list: destination, body,
Content-Type and the forwarded headers.
"""

from __future__ import annotations

import hashlib

from emulators.qstash.clock import Clock
from emulators.qstash.model import Delivered
from emulators.qstash.options import PublishOptions

WINDOW_MS = 10 * 60 * 1000


def dedup_key(destination: str, body: bytes, options: PublishOptions) -> str | None:
    if options.deduplication_id is not None:
        return "id:" + options.deduplication_id
    if not options.content_based_deduplication:
        return None
    digest = hashlib.sha256()
    for part in (destination.encode(), body, (options.content_type or "").encode()):
        digest.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no ambiguity between parts
    for name, value in sorted(options.forward_headers):
        digest.update(f"\n{name.lower()}:{value}".encode())
    return "content:" + digest.hexdigest()


class DedupWindow:
    def __init__(self, clock: Clock, window_ms: float = WINDOW_MS) -> None:
        self._clock = clock
        self._window_ms = window_ms
        # Insertion order is expiry order (one window for all), so expired keys sit at the front.
        self._entries: dict[str, tuple[float, tuple[Delivered, ...]]] = {}

    def lookup(self, key: str) -> tuple[Delivered, ...] | None:
        self._purge()
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def remember(self, key: str, delivered: tuple[Delivered, ...]) -> None:
        self._entries[key] = (self._clock.now_ms() + self._window_ms, delivered)

    def _purge(self) -> None:
        now_ms = self._clock.now_ms()
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now_ms:
                return
            del self._entries[oldest]
