"""`GET /v2/keys` and `POST /v2/keys/rotate` (reference §6.4): rotation makes the next key current and
mints a new next key; every later attempt is signed with the new current key."""

from __future__ import annotations

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.engine import Emulator


def _keys(emulator: Emulator) -> Reply:
    return Reply(200, {"current": emulator.keys.current, "next": emulator.keys.next})


def get_keys(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return _keys(emulator)


def rotate_keys(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    emulator.keys.rotate()
    return _keys(emulator)


ROUTES = [
    Route.of("GET", r"/v2/keys", get_keys),
    Route.of("POST", r"/v2/keys/rotate", rotate_keys),
]
