"""`GET|DELETE /v2/messages/{id}` and bulk cancel `DELETE /v2/messages` (reference §3, G19).

Bulk cancel takes ids from the JSON body `{"messageIds": [...]}` (what the SDK sends) or the
`messageIds` query parameter; without ids, the filters (queueName, url, topicName, label, scheduleId,
flowControlKey, callerIp, fromDate, toDate) select, and no filter at all cancels everything pending.
Both answer 202 `{"cancelled": n}` (openapi).
"""

from __future__ import annotations

from emulators.qstash.api.filters import MessageFilter
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route, multi_values, string_list
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import NotFound
from emulators.qstash.model import Message
from emulators.qstash.wire import message_json


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
    ids = string_list(request.json_or_none(), "messageIds") or multi_values(request, "messageIds")
    if ids:
        targets = [m for m in (emulator.store.messages.get(i) for i in ids) if m is not None]
    else:
        selected = MessageFilter.from_query(request)
        targets = [m for m in emulator.store.pending_messages() if selected.matches(m)]
    cancelled = sum(1 for message in targets if emulator.cancel(message))
    return Reply(202, {"cancelled": cancelled})


ROUTES = [
    Route.of("GET", r"/v2/messages/(?P<id>[^/]+)", get_message),
    Route.of("DELETE", r"/v2/messages/(?P<id>[^/]+)", cancel_message),
    Route.of("DELETE", r"/v2/messages", cancel_many),
]
