"""`GET /v2/events` (what the SDK calls) and `GET /v2/logs` (its newer name): the per-message log,
newest first (or `order=earliestFirst`), as `{"cursor"?, "events": [...]}` (reference §3, §4, G20).
Unknown or empty query parameters are refused (filters.py)."""

from __future__ import annotations

from emulators.qstash.api.filters import cursor_of, event_filter, order_of, page
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route, int_param
from emulators.qstash.engine import Emulator
from emulators.qstash.wire import event_json

MAX_EVENTS_PER_PAGE = 1000  # the SDK's documented default and maximum


def list_events(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    count = int_param(request, "count", MAX_EVENTS_PER_PAGE, 1, MAX_EVENTS_PER_PAGE)
    keep = event_filter(request)
    newest_first = order_of(request)
    log = emulator.store.events
    events, cursor = page(
        reversed(log) if newest_first else iter(log), lambda e: e.seq, keep, cursor_of(request), count, newest_first
    )
    payload: dict[str, object] = {"events": [event_json(e) for e in events]}
    if cursor is not None:
        payload["cursor"] = cursor
    return Reply(200, payload)


ROUTES = [Route.of("GET", r"/v2/(?:events|logs)", list_events)]
