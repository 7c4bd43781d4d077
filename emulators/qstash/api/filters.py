"""Query-string filters and cursor pages for the events, DLQ and bulk-cancel endpoints.

Filters follow the openapi: multi-value filters match any of their values (repeated keys or commas),
different filters must all match, `fromDate`/`toDate` are inclusive Unix milliseconds. A cursor is the
sequence number of the last item returned; the next page starts below it (lists are newest first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from emulators.qstash.api.http import HttpRequest, multi_values, optional_int_param
from emulators.qstash.errors import BadRequest
from emulators.qstash.model import LOG_STATES, DlqEntry, LogEvent, Message


@dataclass(frozen=True, slots=True)
class MessageFilter:
    message_ids: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    schedules: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    flow_keys: frozenset[str] = frozenset()
    caller_ips: frozenset[str] = frozenset()
    from_ms: int | None = None
    to_ms: int | None = None

    @classmethod
    def from_query(cls, request: HttpRequest) -> MessageFilter:
        def values(*names: str) -> frozenset[str]:
            return frozenset(v for name in names for v in multi_values(request, name))

        return cls(
            message_ids=values("messageId", "messageIds"),
            urls=values("url"),
            topics=values("topicName"),
            queues=values("queueName"),
            schedules=values("scheduleId"),
            labels=values("label"),
            flow_keys=values("flowControlKey"),
            caller_ips=values("callerIp", "callerIP"),
            from_ms=optional_int_param(request, "fromDate"),
            to_ms=optional_int_param(request, "toDate"),
        )

    def matches(self, message: Message, at_ms: float | None = None) -> bool:
        spec = message.options.flow_control
        label = message.options.label
        checks: tuple[tuple[frozenset[str], set[str]], ...] = (
            (self.message_ids, {message.message_id}),
            (self.urls, {message.url}),
            (self.topics, {message.topic_name or ""}),
            (self.queues, {message.queue_name or ""}),
            (self.schedules, {message.schedule_id or ""}),
            (self.labels, set(label.split(",")) if label else set()),
            (self.flow_keys, {spec.key} if spec else set()),
            (self.caller_ips, {message.caller_ip}),
        )
        if any(wanted and not wanted & have for wanted, have in checks):
            return False
        return self._in_time(message.created_ms if at_ms is None else at_ms)

    def _in_time(self, time_ms: float) -> bool:
        if self.from_ms is not None and time_ms < self.from_ms:
            return False
        return self.to_ms is None or time_ms <= self.to_ms


def event_filter(request: HttpRequest) -> Callable[[LogEvent], bool]:
    selected = MessageFilter.from_query(request)
    states = frozenset(multi_values(request, "state"))
    unknown = states - LOG_STATES
    if unknown:
        raise BadRequest(f"unknown state {sorted(unknown)[0]!r}; one of {', '.join(sorted(LOG_STATES))}")
    return lambda e: (not states or e.state in states) and selected.matches(e.message, e.time_ms)


def dlq_filter(request: HttpRequest) -> Callable[[DlqEntry], bool]:
    selected = MessageFilter.from_query(request)
    statuses = frozenset(multi_values(request, "responseStatus"))
    if not all(s.isascii() and s.isdigit() for s in statuses):
        raise BadRequest("query parameter responseStatus must be an HTTP status code")
    wanted = frozenset(int(s) for s in statuses)
    return lambda d: (not wanted or (d.response.status or 0) in wanted) and selected.matches(d.message, d.created_ms)


def cursor_of(request: HttpRequest) -> int | None:
    cursor = request.query.get("cursor")
    if cursor is None or cursor == "":
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise BadRequest("query parameter cursor is not a cursor this server returned")
    return int(cursor)


def page[T](
    newest_first: Iterable[T], seq: Callable[[T], int], keep: Callable[[T], bool], cursor: int | None, count: int
) -> tuple[list[T], str | None]:
    """Up to `count` kept items below `cursor`, and the cursor of the next page (None at the end)."""
    found: list[T] = []
    for item in newest_first:
        if cursor is not None and seq(item) >= cursor:
            continue
        if keep(item):
            found.append(item)
            if len(found) > count:
                return found[:count], str(seq(found[count - 1]))
    return found, None
