"""Everything the emulator knows, in memory, with bounds so a long dev session cannot grow forever.

Finished messages stay readable (`GET /v2/messages/{id}`) for the last MAX_FINISHED_MESSAGES: the real
service deletes them soon after delivery, but upstream SDK tests read a message right after publishing
it (reference §5.6). The event log and the DLQ keep their newest entries.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass

from emulators.qstash.clock import Clock
from emulators.qstash.dedup import DedupWindow
from emulators.qstash.model import AttemptResult, DlqEntry, LogEvent, LogState, Message, Queue, Schedule, UrlGroup

MAX_FINISHED_MESSAGES = 10_000
MAX_EVENTS = 200_000
MAX_DLQ_ENTRIES = 10_000
_ID_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """`msg_…`, `scd_…`: the shape of the real ids (reference §5.1); 24 base58 characters."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(slots=True)
class Stats:
    published: int = 0  # messages created by publish, enqueue, batch and schedules
    callbacks: int = 0  # callback and failure-callback messages created
    attempts: int = 0
    delivered: int = 0
    retried: int = 0  # retries scheduled
    failed: int = 0  # messages that ran out of retries (or were non-retryable)
    dlq: int = 0  # DLQ entries created
    canceled: int = 0
    deduplicated: int = 0


class Store:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.messages: dict[str, Message] = {}
        self._finished: deque[str] = deque()
        self.dlq: dict[str, DlqEntry] = {}
        self._dlq_seq = 0
        self.events: deque[LogEvent] = deque(maxlen=MAX_EVENTS)
        self._event_seq = 0
        self.queues: dict[str, Queue] = {}
        self.url_groups: dict[str, UrlGroup] = {}
        self.schedules: dict[str, Schedule] = {}
        self.dedup = DedupWindow(clock)
        self.stats = Stats()

    def add_message(self, message: Message) -> None:
        self.messages[message.message_id] = message

    def mark_finished(self, message: Message) -> None:
        self._finished.append(message.message_id)
        while len(self._finished) > MAX_FINISHED_MESSAGES:
            self.messages.pop(self._finished.popleft(), None)

    def pending_messages(self) -> list[Message]:
        return [m for m in self.messages.values() if m.is_pending]

    def log(
        self,
        state: LogState,
        message: Message,
        *,
        error: str | None = None,
        next_delivery_ms: float | None = None,
        response: AttemptResult | None = None,
    ) -> None:
        self._event_seq += 1
        event = LogEvent(self._event_seq, self._clock.now_ms(), state, message, error, next_delivery_ms, response)
        self.events.append(event)

    def add_dlq(self, message: Message, response: AttemptResult) -> DlqEntry:
        self._dlq_seq += 1
        now_ms = self._clock.now_ms()
        entry = DlqEntry(f"{int(now_ms)}-{self._dlq_seq}", self._dlq_seq, message, now_ms, response)
        self.dlq[entry.dlq_id] = entry
        while len(self.dlq) > MAX_DLQ_ENTRIES:
            del self.dlq[next(iter(self.dlq))]
        self.stats.dlq += 1
        return entry
