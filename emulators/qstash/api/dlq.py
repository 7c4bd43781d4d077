"""The dead-letter queue: list with filters and cursors, get, delete, delete many, retry (reference §3,
§5.4). Entries carry the destination's last response: status, headers and body."""

from __future__ import annotations

from dataclasses import replace

from emulators.qstash.api.filters import cursor_of, dlq_filter, page
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route, int_param, multi_values, string_list
from emulators.qstash.api.publish import reply_for
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import NotFound
from emulators.qstash.model import DlqEntry, PublishRequest
from emulators.qstash.wire import dlq_json

MAX_DLQ_PER_PAGE = 100  # the SDK's documented default and maximum


def _entry(emulator: Emulator, dlq_id: str) -> DlqEntry:
    entry = emulator.store.dlq.get(dlq_id)
    if entry is None:
        raise NotFound(f"dlq message {dlq_id!r} not found")
    return entry


def list_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    count = int_param(request, "count", MAX_DLQ_PER_PAGE, 1, MAX_DLQ_PER_PAGE)
    keep = dlq_filter(request)
    newest_first = reversed(emulator.store.dlq.values())
    entries, cursor = page(newest_first, lambda d: d.seq, keep, cursor_of(request), count)
    payload: dict[str, object] = {"messages": [dlq_json(d) for d in entries]}
    if cursor is not None:
        payload["cursor"] = cursor
    return Reply(200, payload)


def get_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, dlq_json(_entry(emulator, params.text("id"))))


def delete_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    del emulator.store.dlq[_entry(emulator, params.text("id")).dlq_id]
    return Reply(200, {"deleted": 1})


def delete_many(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    """By `{"dlqIds": [...]}` (the SDK) or `?dlqIds=`; otherwise by the list filters (all if none)."""
    ids = string_list(request.json_or_none(), "dlqIds") or multi_values(request, "dlqIds")
    if ids:
        doomed = [i for i in ids if i in emulator.store.dlq]
    else:
        keep = dlq_filter(request)
        doomed = [d.dlq_id for d in emulator.store.dlq.values() if keep(d)]
    for dlq_id in doomed:
        emulator.store.dlq.pop(dlq_id, None)
    return Reply(200, {"deleted": len(doomed)})


def retry_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    """Publish the message again with its original settings and remove it from the DLQ (openapi)."""
    entry = _entry(emulator, params.text("id"))
    message = entry.message
    # Due now and not a duplicate of itself: the original timing and deduplication are spent.
    options = replace(
        message.options, delay_ms=0.0, not_before_ms=None, deduplication_id=None, content_based_deduplication=False
    )
    again = PublishRequest(message.url, message.body, options, message.caller_ip, queue_name=message.queue_name)
    reply = reply_for(emulator.publish(again))
    del emulator.store.dlq[entry.dlq_id]
    return Reply(201, reply.payload)


ROUTES = [
    Route.of("GET", r"/v2/dlq", list_dlq),
    Route.of("DELETE", r"/v2/dlq", delete_many),
    Route.of("POST", r"/v2/dlq/retry/(?P<id>[^/]+)", retry_dlq),
    Route.of("GET", r"/v2/dlq/(?P<id>[^/]+)", get_dlq),
    Route.of("DELETE", r"/v2/dlq/(?P<id>[^/]+)", delete_dlq),
]
