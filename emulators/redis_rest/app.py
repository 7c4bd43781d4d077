"""The gateway as a bare ASGI app: routing, auth, JSON in and out, base64 mode, stats.

A framework would cost more than the routing it offers here; this path is the hot one of every test
and benchmark. Wire rules: shared/reference/upstash-redis-rest.md (section numbers cited below).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from binascii import b2a_base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
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
from emulators.redis_rest.policy import CommandPolicy, needs_rewrite
from emulators.redis_rest.resp import Command, ConnectionLost, Reply, ReplyError
from emulators.redis_rest.tokens import Access, ReadOnlyCommands, Tokens, as_read_only, script_write_refused

log = logging.getLogger("emulators.redis_rest")

OK = b"OK"
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
    allow_admin: bool = False  # turn off Upstash's command table (policy.py)
    protected_users: tuple[str, ...] = ()  # ACL users callers may not change, besides `default`
    max_pipeline_commands: int = MAX_PIPELINE_COMMANDS
    max_command_args: int = MAX_COMMAND_ARGS
    request_timeout_s: float = REQUEST_TIMEOUT_S
    script_timeout_s: float = SCRIPT_TIMEOUT_S  # 0: never stop a script


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


class Gateway:
    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.settings = settings
        self._tokens = settings.tokens
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
        self.requests: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.backend.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout_s = self.settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                status, body = await self._route(scope, receive)
        except TimeoutError:  # Redis' own waits become ConnectionLost: this is the request's deadline
            status, body = 504, {"error": f"ERR the gateway gave up after {timeout_s:g}s (--request-timeout)"}
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except BadRequest as exc:
            status, body = 400, {"error": str(exc)}
        except ConnectionLost as exc:
            status, body = 503, {"error": f"ERR the gateway cannot reach Redis: {exc}"}
        except Exception:
            log.exception("unexpected gateway failure")
            status, body = 500, {"error": "ERR internal gateway error (see the gateway's log)"}
        await self._respond(send, status, body, allow_post=status == 405)

    async def _respond(self, send: Send, status: int, body: Any, allow_post: bool) -> None:
        payload = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            # A new token on every response, as Upstash does: the SDK's read-your-writes follows it (§10).
            (b"upstash-sync-token", f"{self._sync_prefix}-{next(self._sync_counter)}".encode()),
        ]
        if allow_post:
            headers.append((b"allow", b"GET, POST, PUT, HEAD"))
        if self.settings.connection_close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        method: str = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = _SLASHES.sub("/", raw_path.decode("latin-1"))  # `http://h/` + `/pipeline` = `//pipeline` (G6)
        if path != self._base and not path.startswith(self._base.rstrip("/") + "/"):
            raise HttpError(404, f"ERR no such endpoint: the gateway serves {self._base}")
        relative = path[len(self._base.rstrip("/")) :].strip("/")
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
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
        if refused is None and read_only:
            args = as_read_only(args)
            refused = self._readonly.refusal(args)
        if refused is not None:
            return Prepared(args, refused=refused)
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
        self.requests[endpoint] += 1
        self.commands[endpoint] += commands

    async def _command(
        self, endpoint: str, args: tuple[bytes, ...], base64_mode: bool, access: Access
    ) -> tuple[int, Any]:
        self._count(endpoint, 1)
        if len(args) > self.settings.max_command_args:
            raise TooLarge(f"ERR {len(args)} arguments: at most {self.settings.max_command_args} (--max-command-args)")
        (prepared,) = await self._prepare([args], access)
        if prepared.refused is not None:
            return refusal_status(prepared.refused), {"error": prepared.refused}
        scripts = [prepared.args] if prepared.args[0].upper() in SCRIPT_COMMANDS else []
        (reply,) = await self._run([prepared.args], scripts)
        item = encode_item(self._finish(prepared, reply, access is Access.READ_ONLY), base64_mode)
        if "error" in item:
            return refusal_status(item["error"]) if access is Access.READ_ONLY else 400, item
        return 200, item

    async def _pipeline(self, commands: list[tuple[bytes, ...]], base64_mode: bool, access: Access) -> tuple[int, Any]:
        self._count("pipeline", len(commands))
        if self._untouched_pipeline(commands, access):  # the usual case: nothing to refuse or rewrite
            return 200, [encode_item(reply, base64_mode) for reply in await self._run(commands, ())]
        prepared = await self._prepare(commands, access)
        runnable = [p for p in prepared if p.refused is None]
        scripts = [p.args for p in runnable if p.args[0].upper() in SCRIPT_COMMANDS]
        replies = iter(await self._run([p.args for p in runnable], scripts))
        read_only = access is Access.READ_ONLY
        items = [
            {"error": p.refused}
            if p.refused is not None
            else encode_item(self._finish(p, next(replies), read_only), base64_mode)
            for p in prepared
        ]
        return 200, items

    async def _transaction(
        self, commands: list[tuple[bytes, ...]], base64_mode: bool, access: Access
    ) -> tuple[int, Any]:
        self._count("multi-exec", len(commands))
        prepared = await self._prepare(commands, access)
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
            return 400, {"error": str(result)}
        read_only = access is Access.READ_ONLY
        return 200, [
            encode_item(self._finish(p, r, read_only), base64_mode) for p, r in zip(prepared, result, strict=True)
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "commands": dict(self.commands),
            "total": {"requests": self.requests.total(), "commands": self.commands.total()},
        }


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
