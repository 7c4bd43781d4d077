"""The gateway as a bare ASGI app: routing, auth, JSON in and out, base64 mode, stats and metrics.

A framework would cost more than the routing it offers here; this path is the hot one of every test
and benchmark. Wire rules: shared/reference/upstash-redis-rest.md (section numbers cited below).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from binascii import b2a_base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from starlette.types import Receive, Scope, Send

from emulators.redis_rest.backend import Backend
from emulators.redis_rest.commands import (
    SPECIAL,
    BadRequest,
    Prepared,
    ScriptRegistry,
    needs_version,
    parse_json,
    prepare,
    to_command,
    to_commands,
)
from emulators.redis_rest.limits import (
    MAX_COMMAND_ARGS,
    MAX_PIPELINE_COMMANDS,
    REQUEST_TIMEOUT_S,
    SCRIPT_COMMANDS,
    SCRIPT_TIMEOUT_S,
    ScriptWatchdog,
    TooLarge,
    check_sizes,
    is_busy,
    retry_while_busy,
)
from emulators.redis_rest.metrics import CONTENT_TYPE, GatewayMetrics, LiveFigures
from emulators.redis_rest.policy import CommandPolicy, needs_rewrite
from emulators.redis_rest.pubsub import PubSubHub
from emulators.redis_rest.resp import Command, ConnectionLost, Reply, ReplyError
from emulators.redis_rest.shared import SharedCounters
from emulators.redis_rest.sse import StreamSettings, stream, subscriber_for
from emulators.redis_rest.tokens import (
    Access,
    ReadOnlyCommands,
    Tokens,
    as_read_only,
    same_token,
    script_write_refused,
    token_digest,
)

log = logging.getLogger("emulators.redis_rest")

OK = b"OK"
LIVE_PUBLISH_S = 0.1  # how stale another worker's reconnect counts may be in /__stats and /__metrics
_SLASHES = re.compile(r"/{2,}")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Settings:
    tokens: Tokens
    base_path: str = "/"
    max_body_bytes: int = 10 * 1024 * 1024
    max_block_s: float = 10.0
    connection_close: bool = False
    streams: StreamSettings = field(default_factory=StreamSettings)
    metrics_token: str | None = None  # also accepted by /__metrics (a scraper need not hold the main token)
    allow_admin: bool = False  # turn off Upstash's command table (policy.py)
    protected_users: tuple[str, ...] = ()  # ACL users callers may not change, besides `default`
    max_pipeline_commands: int = MAX_PIPELINE_COMMANDS
    max_command_args: int = MAX_COMMAND_ARGS
    request_timeout_s: float = REQUEST_TIMEOUT_S
    script_timeout_s: float = SCRIPT_TIMEOUT_S  # 0: never stop a script


class RawBody(NamedTuple):
    """A response body that is not JSON (the Prometheus text of /__metrics)."""

    content_type: bytes
    payload: bytes


def refusal_status(reason: str) -> int:
    """403 for what the token may not do (NOPERM), 400 for what Upstash never runs."""
    return 403 if reason.startswith("NOPERM") else 400


def encode_reply(reply: Reply, base64_mode: bool) -> Any:
    """A raw Redis reply as Upstash JSON: only strings, integers, null and arrays (RESP2; §6, G3, G4).

    In base64 mode every string is encoded except exactly `OK`; otherwise text is UTF-8 with invalid
    bytes replaced by U+FFFD, as Upstash does.
    """
    if isinstance(reply, bytes):
        if not base64_mode:
            return reply.decode(errors="replace")
        return "OK" if reply == OK else b2a_base64(reply, newline=False).decode()
    if isinstance(reply, list):
        return [encode_reply(item, base64_mode) for item in reply]
    if isinstance(reply, ReplyError):  # only nested deep inside a script's table
        return str(reply)
    return reply


def encode_item(reply: Reply, base64_mode: bool) -> dict[str, Any]:
    if isinstance(reply, ReplyError):
        return {"error": str(reply)}
    if base64_mode and type(reply) is bytes and reply != OK:  # the common case, inlined
        return {"result": b2a_base64(reply, newline=False).decode()}
    return {"result": encode_reply(reply, base64_mode)}


# The methods each endpoint takes, for a 405's `Allow`; path-style commands take the rest's default.
_ALLOW = {"command": b"POST", "pipeline": b"POST", "multi-exec": b"POST", "__stats": b"GET", "__metrics": b"GET"}
_ALLOW |= {"subscribe": b"GET, POST", "psubscribe": b"GET, POST"}
_ALLOW_PATH = b"GET, POST, PUT, HEAD"


def endpoint_kind(relative: str | None) -> str:
    """The `endpoint` label of a request: which of the gateway's endpoints a path names."""
    if relative is None:
        return "unknown"
    if relative in _FIXED_ENDPOINTS:
        return _FIXED_ENDPOINTS[relative]
    first = relative.partition("/")[0]
    return first if first in ("subscribe", "psubscribe") else "path"


_FIXED_ENDPOINTS = {"": "command", "pipeline": "pipeline", "multi-exec": "multi-exec"}
_FIXED_ENDPOINTS |= {"__stats": "__stats", "__metrics": "__metrics"}


class Gateway:
    def __init__(
        self, backend: Backend, settings: Settings, pubsub: PubSubHub, shared: SharedCounters | None = None
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.pubsub = pubsub
        # `shared`: the counters of every worker (--workers); None: this process's own.
        self.metrics = GatewayMetrics(lambda: LiveFigures(backend.reconnects(), pubsub.figures()), shared)
        self._tokens = settings.tokens
        self._metrics_token = token_digest(settings.metrics_token.encode()) if settings.metrics_token else None
        self.policy = CommandPolicy(enabled=not settings.allow_admin, protected_users=settings.protected_users)
        self._readonly = ReadOnlyCommands()
        self._watchdog = ScriptWatchdog(backend.kill_script, settings.script_timeout_s)
        # Command names a pipeline can send untouched: one set lookup per command on the hot path.
        self._untouched = self.policy.plain - SPECIAL - SCRIPT_COMMANDS if self.policy.enabled else None
        self._touched = SPECIAL | SCRIPT_COMMANDS
        self._base = "/" + settings.base_path.strip("/")
        self._scripts = ScriptRegistry()
        self._sync_prefix = secrets.token_hex(4)
        self._sync_counter = itertools.count(1)
        self._publisher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.metrics.serving = True
                if self.metrics.shared.workers > 1:
                    self._publisher = asyncio.create_task(self._publish_live())
                self.metrics.publish_live()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.metrics.serving = False
                if self._publisher is not None:
                    self._publisher.cancel()
                self.metrics.publish_live()
                await self.pubsub.aclose()
                await self.backend.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _publish_live(self) -> None:
        """With several workers: keep this one's reconnect counts fresh for the others (subscriptions are
        published as they open and end)."""
        while True:
            await asyncio.sleep(LIVE_PUBLISH_S)
            self.metrics.publish_live()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        if "//" in path:  # `http://h/` + `/pipeline` = `//pipeline` (G6)
            path = _SLASHES.sub("/", path)
        relative = self._relative(path)
        endpoint = endpoint_kind(relative)
        body: Any = None  # stays None once a subscription stream has answered by itself
        timeout_s = self.settings.request_timeout_s
        try:
            if endpoint in ("subscribe", "psubscribe"):
                # A stream lasts as long as its reader wants: --request-timeout bounds requests, not
                # streams. Its set-up is bounded by --command-timeout (PubSubHub.attach).
                status = await self._subscribe(scope, receive, send, endpoint, relative or "")
            else:
                async with asyncio.timeout(timeout_s):
                    status, body = await self._route(scope, receive, path, relative)
        except TimeoutError:  # Redis' own waits become ConnectionLost: this is the request's deadline
            status, body = 504, {"error": f"ERR the gateway gave up after {timeout_s:g}s (--request-timeout)"}
            self.metrics.error("timeout")
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
            self.metrics.error("http")
            if status == 413:  # over --max-body-bytes
                self.metrics.refused("limit")
        except TooLarge as exc:  # over --max-pipeline-commands or --max-command-args: nothing was sent
            status, body = 400, {"error": str(exc)}
            self.metrics.error("http")
            self.metrics.refused("limit")
        except BadRequest as exc:
            status, body = 400, {"error": str(exc)}
            self.metrics.error("bad_request")
        except ConnectionLost as exc:
            status, body = 503, {"error": f"ERR the gateway cannot reach Redis: {exc}"}
            self.metrics.error("redis_unreachable")
        except Exception:
            log.exception("unexpected gateway failure")
            status, body = 500, {"error": "ERR internal gateway error (see the gateway's log)"}
            self.metrics.error("internal")
        if body is not None:
            await self._respond(send, status, body, allow=_ALLOW.get(endpoint, _ALLOW_PATH) if status == 405 else None)
        self.metrics.request(endpoint, status, time.perf_counter() - started)

    def _headers(self) -> list[tuple[bytes, bytes]]:
        # A new token on every response, as Upstash does: the SDK's read-your-writes follows it (§10).
        headers = [(b"upstash-sync-token", f"{self._sync_prefix}-{next(self._sync_counter)}".encode())]
        if self.settings.connection_close:
            headers.append((b"connection", b"close"))
        return headers

    async def _respond(self, send: Send, status: int, body: Any, allow: bytes | None) -> None:
        if type(body) is RawBody:
            content_type, payload = body
        else:
            content_type, payload = b"application/json", orjson.dumps(body)
        headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()), *self._headers()]
        if allow is not None:  # a 405 names the methods its endpoint takes (RFC 9110, 15.5.6)
            headers.append((b"allow", allow))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _relative(self, path: str) -> str | None:
        """The path below --base-path, without slashes at either end; None if outside it."""
        if path != self._base and not path.startswith(self._base.rstrip("/") + "/"):
            return None
        return path[len(self._base.rstrip("/")) :].strip("/")

    async def _subscribe(self, scope: Scope, receive: Receive, send: Send, kind: str, relative: str) -> int:
        """`/subscribe/<channel>...`, `/psubscribe/<pattern>...` (sse.py); GET too, for EventSource."""
        query = _query(scope)
        # Either token may subscribe: subscribing reads (Upstash documents nothing either way).
        self._authorize(scope, query)
        if scope["method"] not in ("GET", "POST"):
            raise HttpError(405, f"ERR use POST for /{kind}")
        subscriber = subscriber_for(
            "subscribe" if kind == "subscribe" else "psubscribe", relative.partition("/")[2], self.settings.streams
        )
        self._count(kind, len(subscriber.names))
        heartbeat_s = self.settings.streams.heartbeat_s
        await stream(self.pubsub, subscriber, receive, send, self._headers(), heartbeat_s, self.metrics.publish_live)
        return 200

    async def _route(self, scope: Scope, receive: Receive, path: str, relative: str | None) -> tuple[int, Any]:
        method: str = scope["method"]
        if relative is None:
            raise HttpError(404, f"ERR no such endpoint: the gateway serves {self._base}")
        query = _query(scope)
        if relative == "__metrics":
            self._authorize_metrics(scope, query)
            if method != "GET":
                raise HttpError(405, "ERR use GET for /__metrics")
            return 200, RawBody(CONTENT_TYPE.encode(), self.metrics.exposition())
        access = self._authorize(scope, query)
        base64_mode = _header(scope, b"upstash-encoding").lower() == b"base64"

        if relative == "__stats":
            if method != "GET":
                raise HttpError(405, "ERR use GET for /__stats")
            return 200, self.stats()
        if relative in ("", "pipeline", "multi-exec"):
            if method != "POST":
                raise HttpError(405, f"ERR use POST for {path}")
            value = parse_json(await _read_body(receive, self.settings.max_body_bytes))
            if relative == "":
                return await self._command("command", to_command(value), base64_mode, access)
            commands = to_commands(value)
            check_sizes(commands, self.settings.max_pipeline_commands, self.settings.max_command_args)
            if relative == "pipeline":
                return await self._pipeline(commands, base64_mode, access)
            return await self._transaction(commands, base64_mode, access)
        if method not in ("GET", "POST", "PUT", "HEAD"):
            raise HttpError(405, f"ERR method {method} is not allowed")
        args = await self._path_command(relative, method, query, receive)
        return await self._command("path", args, base64_mode, access)

    def _authorize(self, scope: Scope, query: list[tuple[str, str]]) -> Access:
        header = _header(scope, b"authorization")
        offered = header[7:] if header[:7].lower() == b"bearer " else b""
        if not offered:  # Upstash also takes the token as `?_token=` (path-style URLs)
            offered = next((v.encode() for k, v in query if k == "_token"), b"")
        access = self._tokens.access(offered)
        if access is None:
            raise HttpError(401, "Unauthorized")
        return access

    def _authorize_metrics(self, scope: Scope, query: list[tuple[str, str]]) -> None:
        """/__metrics takes --metrics-token as well as the gateway's token."""
        if self._metrics_token is not None:
            header = _header(scope, b"authorization")
            if header[:7].lower() == b"bearer " and same_token(header[7:], self._metrics_token):
                return
        self._authorize(scope, query)

    async def _path_command(
        self, relative: str, method: str, query: list[tuple[str, str]], receive: Receive
    ) -> tuple[bytes, ...]:
        """`GET /get/key`, `POST /set/key` (body = value), `?EX=100` → `EX 100` (Upstash's path form)."""
        args = [unquote_to_bytes(segment) for segment in relative.split("/")]
        if method in ("POST", "PUT"):
            body = await _read_body(receive, self.settings.max_body_bytes)
            if body:
                args.append(body)
        for key, value in query:
            if key != "_token":
                args.extend(a.encode() for a in (key, value) if a)
        return tuple(args)

    def _untouched_pipeline(self, commands: Sequence[tuple[bytes, ...]], access: Access) -> bool:
        """Whether every command goes to Redis as it is: allowed, nothing to rewrite, no script."""
        if access is not Access.READ_WRITE:
            return False
        if self._untouched is not None:
            untouched = self._untouched
            return all(args[0].upper() in untouched for args in commands)
        touched = self._touched
        return not any(args[0].upper() in touched for args in commands)

    async def _prepare(self, commands: Sequence[tuple[bytes, ...]], access: Access) -> list[Prepared]:
        read_only = access is Access.READ_ONLY
        if read_only:
            await self._readonly.load(self.backend)
        major = 7
        if any(needs_version(args) for args in commands):
            major = await self.backend.redis_major()
        return [self._prepare_one(args, major, read_only) for args in commands]

    def _prepare_one(self, args: tuple[bytes, ...], major: int, read_only: bool) -> Prepared:
        """Upstash's command table first, then the token's rights, then the REST rules (commands.py)."""
        refused = self.policy.refusal(args)
        if refused is not None:
            return Prepared(args, refused=refused, refused_because="policy")
        if read_only:
            args = as_read_only(args)
            refused = self._readonly.refusal(args)
            if refused is not None:
                return Prepared(args, refused=refused, refused_because="readonly")
        if self.policy.enabled and needs_rewrite(args):
            args = self.policy.rewrite(args)
        return prepare(args, self._scripts, major, self.settings.max_block_s)

    def _finish(self, prepared: Prepared, reply: Reply, read_only: bool) -> Reply:
        reply = prepared.finish(reply)
        name = prepared.args[0].upper()
        if name in SCRIPT_COMMANDS:
            reply = self._watchdog.explain(reply)
            if read_only:
                reply = script_write_refused(reply, name)
        return reply

    async def _run(self, commands: Sequence[Command], scripts: Sequence[Command]) -> list[Reply]:
        """The commands' replies, scripts watched; sent again if Redis turned all of them away as BUSY."""
        replies = await self._watchdog.run(self.backend.pipeline(commands), scripts)
        if self._watchdog.enabled and replies and all(is_busy(reply) for reply in replies):
            replies = await retry_while_busy(
                lambda: self._watchdog.run(self.backend.pipeline(commands), scripts),
                lambda again: bool(again) and all(is_busy(reply) for reply in again),
            )
        return replies

    def _count(self, endpoint: str, commands: int) -> None:
        self.metrics.counted(endpoint, commands)

    def _count_refused(self, prepared: Sequence[Prepared]) -> None:
        for p in prepared:
            if p.refused is not None:
                self.metrics.refused(p.refused_because)

    def _count_redis_errors(self, replies: Sequence[Reply]) -> None:
        errors = sum(1 for reply in replies if type(reply) is ReplyError)
        if errors:
            self.metrics.error("redis", errors)

    async def _command(
        self, endpoint: str, args: tuple[bytes, ...], base64_mode: bool, access: Access
    ) -> tuple[int, Any]:
        self._count(endpoint, 1)
        if len(args) > self.settings.max_command_args:
            raise TooLarge(f"ERR {len(args)} arguments: at most {self.settings.max_command_args} (--max-command-args)")
        self.metrics.commands((args,))
        (prepared,) = await self._prepare([args], access)
        if prepared.refused is not None:
            self.metrics.refused(prepared.refused_because)
            return refusal_status(prepared.refused), {"error": prepared.refused}
        scripts = [prepared.args] if prepared.args[0].upper() in SCRIPT_COMMANDS else []
        (reply,) = await self._run([prepared.args], scripts)
        item = encode_item(self._finish(prepared, reply, access is Access.READ_ONLY), base64_mode)
        if "error" in item:
            self.metrics.error("redis")
            return refusal_status(item["error"]) if access is Access.READ_ONLY else 400, item
        return 200, item

    async def _pipeline(self, commands: list[tuple[bytes, ...]], base64_mode: bool, access: Access) -> tuple[int, Any]:
        self._count("pipeline", len(commands))
        self.metrics.commands(commands)
        if self._untouched_pipeline(commands, access):  # the usual case: nothing to refuse or rewrite
            replies = await self._run(commands, ())
            self._count_redis_errors(replies)
            return 200, [encode_item(reply, base64_mode) for reply in replies]
        prepared = await self._prepare(commands, access)
        self._count_refused(prepared)
        runnable = [p for p in prepared if p.refused is None]
        scripts = [p.args for p in runnable if p.args[0].upper() in SCRIPT_COMMANDS]
        replies = await self._run([p.args for p in runnable], scripts)
        self._count_redis_errors(replies)
        next_reply = iter(replies)
        read_only = access is Access.READ_ONLY
        items = [
            {"error": p.refused}
            if p.refused is not None
            else encode_item(self._finish(p, next(next_reply), read_only), base64_mode)
            for p in prepared
        ]
        return 200, items

    async def _transaction(
        self, commands: list[tuple[bytes, ...]], base64_mode: bool, access: Access
    ) -> tuple[int, Any]:
        self._count("multi-exec", len(commands))
        self.metrics.commands(commands)
        prepared = await self._prepare(commands, access)
        self._count_refused(prepared)
        refused = next((p.refused for p in prepared if p.refused is not None), None)
        if refused is not None:  # nothing runs, as for a queue-time error (§7)
            return refusal_status(refused), {"error": refused}
        args = [p.args for p in prepared]
        scripts = [a for a in args if a[0].upper() in SCRIPT_COMMANDS]
        result = await self._watchdog.run(self.backend.transaction(args), scripts)
        if self._watchdog.enabled and is_busy(result):
            result = await retry_while_busy(
                lambda: self._watchdog.run(self.backend.transaction(args), scripts), is_busy
            )
        if isinstance(result, ReplyError):
            self.metrics.error("redis")
            return 400, {"error": str(result)}
        self._count_redis_errors(result)
        read_only = access is Access.READ_ONLY
        return 200, [
            encode_item(self._finish(p, r, read_only), base64_mode) for p, r in zip(prepared, result, strict=True)
        ]

    def stats(self) -> dict[str, Any]:
        return self.metrics.stats()


def _query(scope: Scope) -> list[tuple[str, str]]:
    raw: bytes = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"ERR request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
