"""What carries the official SDK's requests: a small asyncio HTTP/1.1 client (shared/http1.py) in place
of its httpx.

`upstash_redis.asyncio.Redis` sends every command through one small object, `AsyncHttpClient`, with one
method: `execute(url, headers, command, from_pipeline)`. `RestHttp` is that object, so every typed method
of the SDK (`get`, `zadd`, `pipeline()`, `multi()`, ...) runs unchanged on top of it. Pinned to
upstash-redis 1.8.0; tests/shared/test_redis_http.py fails if the SDK's internals move.

Why (bench/redis_client.py, README "Performance"): through httpx, most of a call was httpx's own CPU,
about five times the round trip on loopback. The request here is one write of ready bytes and one parse
of the answer, close to the bare-socket floor; the body is encoded exactly as httpx encoded it.

The boundary is the same as before (shared/transport.py): a refused, reset or timed-out connection, or an
endpoint answering 5xx, is `RedisUnavailable`; a Redis error stays `UpstashError`. Every HTTP request counts
one round trip into the request's metrics. Each request has one deadline (connect + write + read); waiting
for one of the `max_connections` slots is local queueing and is not bounded here (callers bound it with
their own deadline, `redis_deadline`).

**Auto-pipelining** (opt-in: `RedisClients(auto_pipeline=True)` or `async with pipelined():`): single
commands issued within one event-loop tick, such as an `asyncio.gather` of independent reads, leave as one
`/pipeline` request; each caller gets its own result or its own error, in order. Scripts and blocking
commands always go alone, and so do `pipeline()` and `multi()` batches: a transaction is never merged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec
from upstash_redis.errors import UpstashError
from upstash_redis.http import _format_command, format_response

from shared.errors import RedisUnavailable
from shared.http1 import Http1Client
from shared.metrics import RequestMetrics, current_request

# What means "Redis cannot be reached": the connection failed, was closed early or did not speak HTTP
# (`ConnectionError`, and `OSError` for the rest of what connecting can raise), or a deadline ran out.
_UNAVAILABLE = (OSError, TimeoutError)

# Never merged into an auto-pipeline: a script may run long, or must stay alone (its callers retry it on
# NOSCRIPT), and a blocking command would hold every other command of the batch behind it.
_ALONE = frozenset(
    (
        "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO", "SCRIPT",
        "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "XREAD", "XREADGROUP", "WAIT", "WAITAOF",
    )
)  # fmt: skip
_CONTENT_TYPE = b"Content-Type: application/json\r\n"
# Commands per auto-pipeline: beyond it, the next command starts a new batch (bounded request bodies).
MAX_BATCH = 500

_pipelined: ContextVar[bool] = ContextVar("stashkit_redis_pipelined", default=False)


@asynccontextmanager
async def pipelined() -> AsyncIterator[None]:
    """Within the block (and the tasks it starts), commands issued in one loop tick share a round trip:

    async with pipelined():
        a, b, c = await asyncio.gather(redis.get("a"), redis.hgetall("b"), redis.zscore("c", "m"))
    """
    token = _pipelined.set(True)
    try:
        yield
    finally:
        _pipelined.reset(token)


def encode_json(value: Any) -> bytes:
    """The body httpx sends for `json=value`, byte for byte (numbers keep the SDK's spelling)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise RedisUnavailable(f"Redis did not answer ({type(exc).__name__})") from exc


@dataclass(slots=True)
class _Batch:
    """Commands waiting for the end of the loop tick, with their callers' futures and request records."""

    commands: list[list[Any]] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    requests: dict[int, RequestMetrics] = field(default_factory=dict)


class RestHttp:
    """A drop-in for `upstash_redis.http.AsyncHttpClient`: same `execute` and `close`, other machinery."""

    def __init__(
        self,
        url: str,
        encoding: str | None,
        sync_token_cb: Callable[[str], None] | None,
        *,
        timeout_s: float,
        max_connections: int,
        auto_pipeline: bool = False,
    ) -> None:
        self._url = url
        self._encoding = encoding
        self._sync_token_cb = sync_token_cb
        self._auto_pipeline = auto_pipeline
        self._slots = asyncio.Semaphore(max_connections)
        self._client = Http1Client(url, timeout_s)
        self._paths: dict[str, str] = {}
        self._batch: _Batch | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, url: str, headers: dict[str, str], command: list[Any], from_pipeline: bool = False) -> Any:
        if (
            not from_pipeline
            and (self._auto_pipeline or _pipelined.get())
            and url == self._url
            and str(command[0]).upper() not in _ALONE
        ):
            return await self._enqueue(headers, command)
        response = await self._send(url, headers, encode_json(_format_command(command, from_pipeline)))
        if not from_pipeline:
            return format_response(response, self._encoding)  # type: ignore[arg-type]
        if isinstance(response, dict):  # the whole batch was refused (a transaction's EXECABORT, a 4xx)
            raise UpstashError(response.get("error") or f"unexpected answer: {response!r}")
        return [format_response(item, self._encoding) for item in response]  # type: ignore[arg-type]

    async def close(self) -> None:
        await self._client.aclose()

    async def _send(self, url: str, headers: dict[str, str], body: bytes) -> Any:
        """POST one request; its decoded JSON. Counted as a round trip into the caller's request."""
        metrics = current_request()
        if metrics is not None:
            metrics.redis_round_trips += 1
        return await self._post(url, headers, body)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> Any:
        path = self._paths.get(url)
        if path is None:
            path = self._paths[url] = urlsplit(url)._replace(scheme="", netloc="").geturl() or "/"
        if any("\n" in value or "\r" in value for value in headers.values()):
            raise ValueError("a Redis REST header holds a line break (check the token)")
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        async with self._slots:
            with unavailable_on_failure():
                response = await self._client.post(path, _CONTENT_TYPE + lines.encode(), body)
        status = response.status
        if status >= 500:  # the service (or the proxy in front of it) is down
            raise RedisUnavailable(f"Redis answered HTTP {status}")
        token = response.headers.get(b"upstash-sync-token")
        if token and self._sync_token_cb is not None:
            self._sync_token_cb(token.decode())
        try:
            return msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            raise UpstashError(f"the Redis endpoint answered HTTP {status} with a body that is not JSON") from None

    # Auto-pipelining --------------------------------------------------------------------------------

    async def _enqueue(self, headers: dict[str, str], command: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            loop.call_soon(self._flush, batch, headers)
        future: asyncio.Future[Any] = loop.create_future()
        batch.commands.append(_format_command(command))
        batch.futures.append(future)
        metrics = current_request()
        if metrics is not None:
            batch.requests[id(metrics)] = metrics
        if len(batch.commands) >= MAX_BATCH:
            self._flush(batch, headers)
        return await future

    def _flush(self, batch: _Batch, headers: dict[str, str]) -> None:
        """Send the batch (at the end of the tick, or when full); a later command starts a new one."""
        if self._batch is not batch:
            return  # already sent because it filled up
        self._batch = None
        task = asyncio.get_running_loop().create_task(self._send_batch(batch, dict(headers)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_batch(self, batch: _Batch, headers: dict[str, str]) -> None:
        for metrics in batch.requests.values():  # one round trip for every request with a command in it
            metrics.redis_round_trips += 1
        single = len(batch.commands) == 1
        try:
            if single:
                response: Any = [await self._post(self._url, headers, encode_json(batch.commands[0]))]
            else:
                response = await self._post(f"{self._url}/pipeline", headers, encode_json(batch.commands))
        except BaseException as exc:  # an outage, or this task cancelled: every caller learns it
            for future in batch.futures:
                if not future.done():
                    future.set_exception(_copy(exc))
            if not isinstance(exc, Exception):
                raise
            return
        if isinstance(response, dict):  # the endpoint refused the whole request
            response = [response] * len(batch.futures)
        for future, item in zip(batch.futures, response, strict=True):
            if future.done():  # its caller gave up (a deadline): the others still get theirs
                continue
            try:
                future.set_result(format_response(item, self._encoding))  # type: ignore[arg-type]
            except UpstashError as exc:
                future.set_exception(exc)


def _copy(exc: BaseException) -> BaseException:
    """One exception object per waiting caller (tracebacks are per raise)."""
    if isinstance(exc, RedisUnavailable | UpstashError):
        return type(exc)(str(exc))
    if isinstance(exc, asyncio.CancelledError):
        return RedisUnavailable("the Redis request was cancelled")
    return exc
