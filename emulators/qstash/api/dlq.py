"""The dead-letter queue: list with filters and cursors, get, delete, retry, and the bulk actions
`DELETE /v2/dlq` and `POST /v2/dlq/retry` (reference §3, §5.4; openapi "Bulk Retry DLQ messages").

A bulk action selects by `dlqIds` (query, or the Python SDK's JSON body `{"dlqIds": [...]}`), or by the
list filters, or everything when it has no filter (`all=true` says so explicitly, as the JS SDK's
`{all: true}` means). `count` bounds how many one call handles; when more remain the reply carries a
`cursor` for the next call, in the listing's order (newest first). Unknown parameters are refused.
A retry keeps the message's options unless the request's configuration headers override them.
"""

from __future__ import annotations

from emulators.qstash.api.filters import (
    DLQ_BULK_PARAMS,
    DLQ_LIST_PARAMS,
    check_params,
    cursor_of,
    dlq_filter,
    has_filter,
    order_of,
    page,
    wants_all,
)
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route, int_param, string_list
from emulators.qstash.api.publish import reply_for
from emulators.qstash.api.retry_overrides import retried_options
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest, NotFound
from emulators.qstash.model import DlqEntry, PublishRequest
from emulators.qstash.options import PublishOptions
from emulators.qstash.store import MAX_DLQ_ENTRIES
from emulators.qstash.wire import dlq_json

MAX_DLQ_PER_PAGE = 100  # the SDK's documented default and maximum


def _entry(emulator: Emulator, dlq_id: str) -> DlqEntry:
    entry = emulator.store.dlq.get(dlq_id)
    if entry is None:
        raise NotFound(f"dlq message {dlq_id!r} not found")
    return entry


def _with_cursor(payload: dict[str, object], cursor: str | None) -> dict[str, object]:
    if cursor is not None:
        payload["cursor"] = cursor
    return payload


def list_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    check_params(request, DLQ_LIST_PARAMS)
    count = int_param(request, "count", MAX_DLQ_PER_PAGE, 1, MAX_DLQ_PER_PAGE)
    keep = dlq_filter(request)
    newest_first = order_of(request)
    store = emulator.store.dlq.values()
    ordered = reversed(store) if newest_first else iter(store)
    entries, cursor = page(ordered, lambda d: d.seq, keep, cursor_of(request), count, newest_first)
    return Reply(200, _with_cursor({"messages": [dlq_json(d) for d in entries]}, cursor))


def get_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, dlq_json(_entry(emulator, params.text("id"))))


def delete_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    del emulator.store.dlq[_entry(emulator, params.text("id")).dlq_id]
    return Reply(200, {"deleted": 1})


def _selected(emulator: Emulator, request: HttpRequest) -> tuple[list[DlqEntry], str | None]:
    """The entries one bulk call acts on, and the cursor of the next call (None when none remain)."""
    dlq = emulator.store.dlq
    body_ids = string_list(request.json_or_none(), "dlqIds")
    if body_ids is not None:
        if request.query:
            raise BadRequest("dlqIds in the body cannot be combined with query parameters")
        return [dlq[i] for i in dict.fromkeys(body_ids) if i in dlq], None
    check_params(request, DLQ_BULK_PARAMS)
    wants_all(request)
    if "dlqIds" in request.query and (has_filter(request) or "cursor" in request.query):
        raise BadRequest("dlqIds cannot be combined with filters or a cursor")
    count = int_param(request, "count", MAX_DLQ_ENTRIES, 1, MAX_DLQ_ENTRIES)
    keep = dlq_filter(request)
    return page(reversed(dlq.values()), lambda d: d.seq, keep, cursor_of(request), count)


def delete_many(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    entries, cursor = _selected(emulator, request)
    for entry in entries:
        emulator.store.dlq.pop(entry.dlq_id, None)
    return Reply(200, _with_cursor({"deleted": len(entries)}, cursor))


def _republish(emulator: Emulator, entry: DlqEntry, options: PublishOptions) -> Reply:
    """Publish the message again with `options` and remove it from the DLQ (openapi)."""
    message = entry.message
    again = PublishRequest(message.url, message.body, options, message.caller_ip, queue_name=message.queue_name)
    reply = reply_for(emulator.publish(again))
    emulator.store.dlq.pop(entry.dlq_id, None)
    return reply


def retry_dlq(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    entry = _entry(emulator, params.text("id"))
    options = retried_options(entry.message.options, request.headers)
    return Reply(201, _republish(emulator, entry, options).payload)


def retry_many(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    """`{"cursor"?, "responses": [{"messageId", "url"?, "deduplicated"?}, ...]}`: one per entry, in order."""
    entries, cursor = _selected(emulator, request)
    # Check the override headers once, before anything is published: a bad one touches nothing.
    retried_options(PublishOptions(), request.headers)
    responses = [
        _republish(emulator, entry, retried_options(entry.message.options, request.headers)).payload
        for entry in entries
    ]
    return Reply(201, _with_cursor({"responses": responses}, cursor))


ROUTES = [
    Route.of("GET", r"/v2/dlq", list_dlq),
    Route.of("DELETE", r"/v2/dlq", delete_many),
    Route.of("POST", r"/v2/dlq/retry", retry_many),
    Route.of("POST", r"/v2/dlq/retry/(?P<id>[^/]+)", retry_dlq),
    Route.of("GET", r"/v2/dlq/(?P<id>[^/]+)", get_dlq),
    Route.of("DELETE", r"/v2/dlq/(?P<id>[^/]+)", delete_dlq),
]
