"""The emulator's in-memory records: messages, attempts, DLQ entries, queues, URL groups, schedules,
log events. Times are emulator-clock Unix milliseconds (floats; the wire rounds them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from emulators.qstash.cron import CronSchedule
from emulators.qstash.gates import Gate
from emulators.qstash.options import HeaderMap, PublishOptions

MessageState = Literal["CREATED", "ACTIVE", "RETRY", "DELIVERED", "FAILED", "CANCELED"]
# The states the SDK's LogState accepts; `CANCELED` has one L (reference §4, G20).
LogState = Literal[
    "CREATED", "ACTIVE", "RETRY", "ERROR", "DELIVERED", "FAILED", "CANCEL_REQUESTED", "CANCELED", "IN_PROGRESS"
]
LOG_STATES: frozenset[str] = frozenset(get_args(LogState))
FINISHED: frozenset[str] = frozenset(("DELIVERED", "FAILED", "CANCELED"))


@dataclass(slots=True, eq=False)
class Message:
    message_id: str
    url: str  # exactly as published: the signature's `sub`
    body: bytes
    options: PublishOptions
    created_ms: float
    not_before_ms: float  # what the publisher asked for (reported as `notBefore`)
    due_ms: float  # when the next attempt is due here, after time scaling
    caller_ip: str
    topic_name: str | None = None
    endpoint_name: str | None = None
    queue_name: str | None = None
    schedule_id: str | None = None
    state: MessageState = "CREATED"
    retried: int = 0
    cancel_requested: bool = False
    holds_queue_slot: bool = False
    holds_flow_slot: bool = False

    @property
    def is_pending(self) -> bool:
        return self.state not in FINISHED and not self.cancel_requested

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True, slots=True)
class PublishRequest:
    destination: str  # a URL, or a URL-group name
    body: bytes
    options: PublishOptions
    caller_ip: str
    queue_name: str | None = None
    schedule_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message a publish created: also what a duplicate publish answers with."""

    message_id: str
    url: str


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    delivered: tuple[Delivered, ...]
    to_group: bool
    deduplicated: bool


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one delivery attempt got back; `status` is None when no HTTP response came."""

    status: int | None
    headers: HeaderMap = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def non_retryable(self) -> bool:
        """489 + `Upstash-NonRetryable-Error: true` skips the remaining retries (reference §5.3)."""
        flag = self.headers.get("Upstash-Nonretryable-Error", [""])[0]
        return self.status == 489 and flag.strip().lower() == "true"

    def header_value(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


@dataclass(slots=True, eq=False)
class DlqEntry:
    dlq_id: str
    seq: int  # creation order: the list cursor
    message: Message
    created_ms: float
    response: AttemptResult


@dataclass(slots=True, eq=False)
class Queue:
    name: str
    created_ms: float
    updated_ms: float
    gate: Gate[Message]


@dataclass(slots=True)
class Endpoint:
    url: str
    name: str | None = None


@dataclass(slots=True, eq=False)
class UrlGroup:
    name: str
    created_ms: float
    updated_ms: float
    endpoints: list[Endpoint] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Schedule:
    schedule_id: str
    destination: str
    cron: CronSchedule
    body: bytes
    options: PublishOptions
    queue_name: str | None
    created_ms: float
    caller_ip: str
    paused: bool = False
    next_tick_ms: float | None = None
    last_tick_ms: float | None = None
    last_message_ids: tuple[str, ...] = ()
    error: str | None = None
    late_ticks: int = 0  # ticks fired in a row that were already past when reached (catch-up)


@dataclass(frozen=True, slots=True)
class LogEvent:
    seq: int
    time_ms: float
    state: LogState
    message: Message
    error: str | None = None
    next_delivery_ms: float | None = None
    response: AttemptResult | None = None
