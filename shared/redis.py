"""The one way functions get a Redis client: the official `upstash_redis.asyncio.Redis`.

One client for the running event loop, created on first use and reused by every later invocation on it
(shared/transport.py `LoopLocal`). Mangum runs every invocation of a warm Lambda on one loop, so there it
is one client for the life of the container; a new loop gets a new client, so no call ever pays the
SDK's 3 s retry after a loop change (reference §2, G10).

The client is the SDK's `Redis` with what carries its requests replaced (shared/redis_http.py): a small
asyncio HTTP/1.1 client instead of httpx, for a fraction of httpx's CPU per call, with this library's
boundary:
- a deadline on every request (the SDK has none, so a stalled endpoint would hang the function until
  the platform kills it: G9);
- one count per round trip, into the request's metrics (shared/metrics.py) for the request log;
- **the one mapping of failures**: a refused, reset or timed-out connection, or an endpoint answering
  5xx, becomes `RedisUnavailable`; everything else stays what it is. A Redis reply error
  (`UpstashError('WRONGTYPE ...')`, a 400 from the endpoint) is a bug in the caller's data or code,
  never an outage: it propagates and becomes a logged 500, never a fail-open "allow";
- opt-in auto-pipelining (`pipelined()`, `RedisClients(auto_pipeline=True)`).

Library code depends on `RedisClient`, the two calls it makes, so tests and other transports can be
injected instead of patching this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from upstash_redis.asyncio import Redis
from upstash_redis.commands import AsyncJsonCommands, AsyncSearchCommands
from upstash_redis.http import make_headers

from shared import transport
from shared.config import RedisSettings, http_settings, redis_settings
from shared.redis_http import RestHttp, pipelined, unavailable_on_failure

__all__ = ["RedisClient", "RedisClients", "RedisPipeline", "close_redis", "get_redis", "pipelined", "redis_deadline"]

# Requests in flight to the REST endpoint per client (per event loop), each on its own kept-alive
# connection; more wait for a free one. Lambda sends one request at a time per instance, Vercel Fluid a
# few; auto-pipelining folds a handler's concurrent reads into one.
POOL_SIZE = 16


class RedisPipeline(Protocol):
    def execute(self, command: list[Any]) -> object:
        """Queue one command (`["HGET", key, field]`); nothing is sent yet."""
        ...

    async def exec(self) -> list[Any]:
        """Send every queued command in one round trip; their decoded results, in order."""
        ...


class RedisClient(Protocol):
    """What the library needs from a Redis client: one command, or a pipeline of them, as Redis command
    lists. The official SDK's `Redis` is one as it is (it decodes results the way its typed methods do)."""

    async def execute(self, command: list[Any]) -> Any: ...

    def pipeline(self) -> RedisPipeline: ...


RedisProvider = Callable[[], RedisClient]


@asynccontextmanager
async def redis_deadline(timeout_s: float) -> AsyncIterator[None]:
    """Bound Redis calls by a caller's own deadline (a rate-limit policy's `timeout_ms`); running out
    of it is an outage, like a lost connection."""
    with unavailable_on_failure():
        async with asyncio.timeout(timeout_s):
            yield


class _Redis(Redis):
    """The SDK's `Redis`, its requests carried by `RestHttp`.

    Sets what `Redis.__init__` sets (upstash-redis 1.8.0: base64 responses, telemetry headers,
    read-your-writes), except the httpx client that constructor builds: building one loads a CA bundle
    into an SSL context, tens of milliseconds at every cold start, for a client never used.
    tests/shared/test_redis_http.py compares the two objects and fails if the SDK's internals move.
    """

    def __init__(self, url: str, token: str, *, timeout_s: float, auto_pipeline: bool) -> None:
        self._url = url
        self._read_your_writes = True
        self._sync_token = ""
        self._allow_telemetry = True
        self._headers = make_headers(token, "base64", allow_telemetry=True)
        self._json = AsyncJsonCommands(self)
        self._search = AsyncSearchCommands(self)
        self._http = RestHttp(  # type: ignore[assignment]
            url,
            "base64",
            self._update_sync_token,
            timeout_s=timeout_s,
            max_connections=POOL_SIZE,
            auto_pipeline=auto_pipeline,
        )


class RedisClients:
    """The client for one Redis endpoint, bound to the running event loop (`transport.LoopLocal`)."""

    def __init__(
        self, settings: RedisSettings | None = None, timeout_s: float | None = None, *, auto_pipeline: bool = False
    ) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._auto_pipeline = auto_pipeline
        self._clients = transport.LoopLocal(self._new_client)

    @property
    def settings(self) -> RedisSettings:
        if self._settings is None:
            self._settings = redis_settings()
        return self._settings

    def _new_client(self) -> Redis:
        if self._timeout_s is None:
            self._timeout_s = http_settings().redis_timeout_s
        # No retry: a resend after a lost reply could count an INCR or a rate-limit script twice, and
        # the SDK's fixed 3 s pause outlasts most function budgets (§9). Callers that can safely retry
        # do so themselves.
        settings = self.settings
        return _Redis(
            settings.rest_url, settings.rest_token, timeout_s=self._timeout_s, auto_pipeline=self._auto_pipeline
        )

    def get(self) -> Redis:
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the running loop's client: for scripts that end their loop (`asyncio.run`) on purpose."""
        client = self._clients.forget()
        if client is not None:
            await client.close()


_default = RedisClients()


def get_redis() -> Redis:
    """The Redis client for the running event loop, configured from the environment."""
    return _default.get()


async def close_redis() -> None:
    """Close the running loop's default client: for a script that ends its loop on purpose
    (`python -m shared` runs each command under `asyncio.run`)."""
    await _default.aclose()
