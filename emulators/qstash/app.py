"""The server as a bare ASGI app: auth, routing on the raw path, JSON replies and errors.

Routing reads `raw_path`, never the decoded `path`: destinations are pasted raw into the path and a
decoded `%2F` would corrupt them (reference §3 "Routing pitfalls"). Every failure is `{"error": ...}`
with its status; an unexpected exception is logged here and answered 500 without its details.
Tokens and signing keys are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from emulators.qstash.api import (
    control,
    dlq,
    events,
    flow_control,
    keys,
    messages,
    publish,
    queues,
    schedules,
    url_groups,
)
from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.clock import EmulatorClock
from emulators.qstash.config import EmulatorConfig
from emulators.qstash.delivery import ClientLanes
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import ApiError, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized

log = logging.getLogger("emulators.qstash")

ROUTES: tuple[Route, ...] = (
    *publish.ROUTES,
    *messages.ROUTES,
    *queues.ROUTES,
    *schedules.ROUTES,
    *url_groups.ROUTES,
    *keys.ROUTES,
    *events.ROUTES,
    *dlq.ROUTES,
    *flow_control.ROUTES,
    *control.ROUTES,
)


class QStashApp:
    def __init__(self, config: EmulatorConfig, clock: EmulatorClock | None = None) -> None:
        self.config = config
        self.clock = clock or EmulatorClock()
        self._authorization = ("Bearer " + config.token).encode()
        self._emulator: Emulator | None = None
        self._lanes = ClientLanes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            reply = await self._handle(scope, receive)
            await self._send(send, reply)

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:  # created at startup, or here by a server that skips the lifespan
            self._emulator = Emulator(self.config, self.clock, self._lanes)
        return self._emulator

    async def aclose(self) -> None:
        if self._emulator is not None:
            await self._emulator.aclose()
        await self._lanes.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _ = self.emulator
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive) -> Reply:
        try:
            headers = Headers(raw=scope["headers"])
            self._authorize(headers)
            raw_path = scope.get("raw_path") or scope["path"].encode()
            route, params = _route(scope["method"], raw_path.decode("latin-1"))
            request = HttpRequest(
                method=scope["method"],
                raw_path=raw_path.decode("latin-1"),
                query_string=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=await self._read_body(headers, receive),
                client_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
            )
            return route.handler(self.emulator, request, params)
        except ApiError as exc:
            return Reply(exc.status, {"error": exc.message})
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            return Reply(500, {"error": "internal error"})

    def _authorize(self, headers: Headers) -> None:
        given = headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(given, self._authorization):
            raise Unauthorized("missing or invalid Authorization: Bearer token")

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        declared = headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _send(self, send: Send, reply: Reply) -> None:
        body = b"" if reply.payload is None else json.dumps(reply.payload, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.config.connection_close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _route(method: str, raw_path: str) -> tuple[Route, Params]:
    path_matched = False
    for route in ROUTES:
        match = route.pattern.fullmatch(raw_path)
        if match is None:
            continue
        if method in route.methods:
            return route, Params(match)
        path_matched = True
    if path_matched:
        raise MethodNotAllowed(f"{method} is not allowed on {raw_path}")
    raise NotFound(f"no endpoint {raw_path}")
