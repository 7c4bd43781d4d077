"""`GET|DELETE /v2/messages/{id}` and bulk cancel `DELETE /v2/messages` (reference §3, G19).

Bulk cancel takes ids from the JSON body `{"messageIds": [...]}` (what the SDK sends) or the
`messageIds` query parameter; without ids, the filters (queueName, url, topicName/urlGroup, label,
scheduleId, flowControlKey, callerIp, host, path, fromDate, toDate; repeated values OR, filters AND)
select, and no filter at all (or `all=true`) cancels everything pending, as the openapi says. `count`
caps how many one call cancels. Unknown or empty parameters are refused with 400 (filters.py), so a
typo cannot widen a cancel to everything. Both answer 202 `{"cancelled": n}` (openapi).
"""

from __future__ import annotations

from emulators.qstash.api.filters import CANCEL_PARAMS, MessageFilter, check_params, has_filter, wants_all
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route, int_param, multi_values, string_list
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest, NotFound
from emulators.qstash.model import Message
from emulators.qstash.wire import message_json

MAX_CANCEL = 1_000_000  # `count` is optional: without it every match is cancelled (openapi)


def _message(emulator: Emulator, message_id: str) -> Message:
    message = emulator.store.messages.get(message_id)
    if message is None:
        raise NotFound(f"message {message_id!r} not found")
    return message


def get_message(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, message_json(_message(emulator, params.text("id"))))


def cancel_message(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    message = _message(emulator, params.text("id"))
    if not emulator.cancel(message):
        raise NotFound(f"message {message.message_id!r} is not pending (state {message.state})")
    return Reply(202, {"cancelled": 1})


def cancel_many(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    body_ids = string_list(request.json_or_none(), "messageIds")
    if body_ids is not None:
        if request.query:
            raise BadRequest("messageIds in the body cannot be combined with query parameters")
        return Reply(202, {"cancelled": _cancel(emulator, _by_id(emulator, body_ids))})
    check_params(request, CANCEL_PARAMS)
    wants_all(request)
    count = int_param(request, "count", MAX_CANCEL, 1, MAX_CANCEL)
    ids = multi_values(request, "messageIds")
    if ids:
        if has_filter(request):
            raise BadRequest("messageIds cannot be combined with filters")
        targets = _by_id(emulator, ids)
    else:
        selected = MessageFilter.from_query(request)
        targets = [m for m in emulator.store.pending_messages() if selected.matches(m)]
    return Reply(202, {"cancelled": _cancel(emulator, targets, count)})


def _by_id(emulator: Emulator, ids: list[str]) -> list[Message]:
    found = (emulator.store.messages.get(i) for i in dict.fromkeys(ids))
    return [m for m in found if m is not None]


def _cancel(emulator: Emulator, targets: list[Message], count: int = MAX_CANCEL) -> int:
    """Cancel pending targets, oldest first, until `count` are cancelled."""
    cancelled = 0
    for message in targets:
        if cancelled >= count:
            break
        cancelled += emulator.cancel(message)
    return cancelled


ROUTES = [
    Route.of("GET", r"/v2/messages/(?P<id>[^/]+)", get_message),
    Route.of("DELETE", r"/v2/messages/(?P<id>[^/]+)", cancel_message),
    Route.of("DELETE", r"/v2/messages", cancel_many),
]
