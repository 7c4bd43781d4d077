"""Flow-control keys: get, list, pause, resume, pin, unpin, reset the rate; global parallelism
(reference §3; openapi Flow Control). Pause and pin create a key not seen yet, so it can be set up
before its first message; the other actions on an unknown key are 404."""

from __future__ import annotations

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.engine import GLOBAL_PARALLELISM, Emulator
from emulators.qstash.errors import BadRequest, NotFound
from emulators.qstash.flow_control import FlowControlKey
from emulators.qstash.flow_spec import MAX_PERIOD_S


def _key(emulator: Emulator, key: str) -> FlowControlKey:
    entry = emulator.flow.get(key)
    if entry is None:
        raise NotFound(f"flow control key {key!r} not found")
    return entry


def get_key(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, emulator.flow.info_json(_key(emulator, params.text("key"))))


def list_keys(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, [emulator.flow.info_json(k) for k in emulator.flow.keys.values()])


def global_parallelism(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, {"parallelismMax": GLOBAL_PARALLELISM, "parallelismCount": emulator.in_flight})


def action(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    key, verb = params.text("key"), params.raw("action")
    entry = emulator.flow.ensure(key) if verb in ("pause", "pin") else _key(emulator, key)
    if verb in ("pause", "resume"):
        entry.gate.paused = verb == "pause"
        entry.gate.pump()
    elif verb == "resetRate":
        entry.gate.reset_rate()
    elif verb == "pin":
        emulator.flow.pin(
            entry,
            parallelism=_number(request, "parallelism", 1_000_000),
            rate=_number(request, "rate", 1_000_000),
            period_s=_number(request, "period", MAX_PERIOD_S),
        )
    else:
        emulator.flow.unpin(entry, parallelism=_flag(request, "parallelism"), rate=_flag(request, "rate"))
        entry.gate.pump()
    return Reply(200)


def _number(request: HttpRequest, name: str, high: int) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= high:
        raise BadRequest(f"query parameter {name} must be an integer from 1 to {high}")
    return int(value)


def _flag(request: HttpRequest, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise BadRequest(f"query parameter {name} must be true or false")
    return value == "true"


ROUTES = [
    Route.of("GET", r"/v2/flowControl", list_keys),
    Route.of("GET", r"/v2/flowControl/(?P<key>[^/]+)", get_key),
    Route.of("POST", r"/v2/flowControl/(?P<key>[^/]+)/(?P<action>pause|resume|resetRate|pin|unpin)", action),
    Route.of("GET", r"/v2/globalParallelism", global_parallelism),
]
