"""Query-string filters and cursor pages for the events, DLQ and bulk endpoints, strictly checked.

Filters follow the openapi and the JS SDK's filter types (`@upstash/qstash` src/client/filter-types.ts):
multi-value filters match any of their values (repeated keys or commas), different filters must all
match, `fromDate`/`toDate` are inclusive Unix milliseconds. A cursor is the sequence number of the last
item returned; the next page starts after it in the listing order.

Every endpoint names the parameters it takes and refuses any other, and any empty value, with 400
naming the parameter: an ignored filter (a typo, a filter this server lacks) would widen a bulk
delete to everything, and an emulator must be at least as strict as the real service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from emulators.qstash.api.http import HttpRequest, multi_values, optional_int_param
from emulators.qstash.errors import BadRequest
from emulators.qstash.model import LOG_STATES, DlqEntry, LogEvent, Message

# The filters every listing and bulk endpoint takes; `urlGroup` is the JS SDK's name for `topicName`.
MESSAGE_FILTERS = frozenset(
    {
        "messageId",
        "url",
        "topicName",
        "urlGroup",
        "queueName",
        "scheduleId",
        "label",
        "flowControlKey",
        "callerIp",
        "callerIP",
        "host",
        "path",
        "fromDate",
        "toDate",
    }
)
EVENT_PARAMS = MESSAGE_FILTERS | {"messageIds", "state", "count", "cursor", "order"}
DLQ_LIST_PARAMS = MESSAGE_FILTERS | {"dlqIds", "responseStatus", "count", "cursor", "order"}
DLQ_BULK_PARAMS = MESSAGE_FILTERS | {"dlqIds", "responseStatus", "count", "cursor", "all"}
CANCEL_PARAMS = (MESSAGE_FILTERS - {"messageId"}) | {"messageIds", "count", "all"}
# Parameters that choose pages or targets rather than narrow a filter.
NOT_FILTERS = frozenset({"count", "cursor", "order", "all", "dlqIds", "messageIds"})
ORDERS = ("latestFirst", "earliestFirst")


def check_params(request: HttpRequest, allowed: frozenset[str]) -> None:
    """400 for a parameter the endpoint does not take, or a filter given an empty value."""
    for name, value in request.query.multi_items():
        if name not in allowed:
            raise BadRequest(f"unknown query parameter {name!r}; this endpoint takes {', '.join(sorted(allowed))}")
        if name != "cursor" and not any(part for part in value.split(",")):
            raise BadRequest(f"query parameter {name} must not be empty")


def has_filter(request: HttpRequest) -> bool:
    return any(name not in NOT_FILTERS for name in request.query)


def wants_all(request: HttpRequest) -> bool:
    """`all=true` (what the JS SDK's `{all: true}` means) may not be combined with ids or filters."""
    value = request.query.get("all")
    if value is None:
        return False
    if value != "true":
        raise BadRequest("query parameter all must be true")
    if has_filter(request) or "dlqIds" in request.query or "messageIds" in request.query:
        raise BadRequest("query parameter all cannot be combined with ids or filters")
    return True


def order_of(request: HttpRequest) -> bool:
    """True for newest first (this server's default), False for `order=earliestFirst`."""
    order = request.query.get("order", "latestFirst")
    if order not in ORDERS:
        raise BadRequest(f"query parameter order must be one of {', '.join(ORDERS)}")
    return order == "latestFirst"


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
    hosts: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    from_ms: int | None = None
    to_ms: int | None = None

    @classmethod
    def from_query(cls, request: HttpRequest) -> MessageFilter:
        def values(*names: str) -> frozenset[str]:
            return frozenset(v for name in names for v in multi_values(request, name))

        return cls(
            message_ids=values("messageId", "messageIds"),
            urls=values("url"),
            topics=values("topicName", "urlGroup"),
            queues=values("queueName"),
            schedules=values("scheduleId"),
            labels=values("label"),
            flow_keys=values("flowControlKey"),
            caller_ips=values("callerIp", "callerIP"),
            hosts=frozenset(h.lower() for h in values("host")),
            paths=values("path"),
            from_ms=optional_int_param(request, "fromDate"),
            to_ms=optional_int_param(request, "toDate"),
        )

    def matches(self, message: Message, at_ms: float | None = None) -> bool:
        spec = message.options.flow_control
        where = urlsplit(message.url)
        checks: tuple[tuple[frozenset[str], set[str]], ...] = (
            (self.message_ids, {message.message_id}),
            (self.urls, {message.url}),
            (self.topics, {message.topic_name or ""}),
            (self.queues, {message.queue_name or ""}),
            (self.schedules, {message.schedule_id or ""}),
            (self.labels, set(message.options.labels)),
            (self.flow_keys, {spec.key} if spec else set()),
            (self.caller_ips, {message.caller_ip}),
            (self.hosts, {(where.hostname or "").lower()}),
            (self.paths, {where.path or "/"}),
        )
        if any(wanted and not wanted & have for wanted, have in checks):
            return False
        return self._in_time(message.created_ms if at_ms is None else at_ms)

    def _in_time(self, time_ms: float) -> bool:
        if self.from_ms is not None and time_ms < self.from_ms:
            return False
        return self.to_ms is None or time_ms <= self.to_ms


def event_filter(request: HttpRequest) -> Callable[[LogEvent], bool]:
    check_params(request, EVENT_PARAMS)
    selected = MessageFilter.from_query(request)
    states = frozenset(multi_values(request, "state"))
    unknown = states - LOG_STATES
    if unknown:
        raise BadRequest(f"unknown state {sorted(unknown)[0]!r}; one of {', '.join(sorted(LOG_STATES))}")
    return lambda e: (not states or e.state in states) and selected.matches(e.message, e.time_ms)


def dlq_filter(request: HttpRequest) -> Callable[[DlqEntry], bool]:
    """The DLQ filters; the caller has checked the parameters against its own endpoint's set."""
    selected = MessageFilter.from_query(request)
    statuses = frozenset(multi_values(request, "responseStatus"))
    if not all(s.isascii() and s.isdigit() and len(s) <= 3 for s in statuses):
        raise BadRequest("query parameter responseStatus must be an HTTP status code")
    wanted = frozenset(int(s) for s in statuses)
    ids = frozenset(multi_values(request, "dlqIds"))
    return lambda d: (
        (not ids or d.dlq_id in ids)
        and (not wanted or (d.response.status or 0) in wanted)
        and selected.matches(d.message, d.created_ms)
    )


def cursor_of(request: HttpRequest) -> int | None:
    cursor = request.query.get("cursor")
    if cursor is None or cursor == "":
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise BadRequest("query parameter cursor is not a cursor this server returned")
    return int(cursor)


def page[T](
    items: Iterable[T],
    seq: Callable[[T], int],
    keep: Callable[[T], bool],
    cursor: int | None,
    count: int,
    newest_first: bool = True,
) -> tuple[list[T], str | None]:
    """Up to `count` kept items after `cursor` in `items`' order (newest first unless told otherwise),
    and the cursor of the next page (None at the end)."""
    found: list[T] = []
    for item in items:
        if cursor is not None and (seq(item) >= cursor if newest_first else seq(item) <= cursor):
            continue
        if keep(item):
            found.append(item)
            if len(found) > count:
                return found[:count], str(seq(found[count - 1]))
    return found, None
