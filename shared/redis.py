"""The one way functions get a Redis client: the official `upstash_redis.asyncio.Redis`.

One client for the running event loop, created on first use and reused by every later invocation on it
(shared/transport.py `LoopLocal`). Mangum runs every invocation of a warm Lambda on one loop, so there it
is one client for the life of the container; a new loop gets a new client, so no call ever pays the
SDK's 3 s retry after a loop change (reference §2, G10).

The SDK's httpx client is replaced by one with this library's boundary in its transport:
- a timeout (the SDK has none, so a stalled endpoint would hang the function until the platform kills
  it: G9);
- one count per round trip, into the request's metrics (shared/metrics.py) for the request log;
- **the one mapping of failures** (shared/transport.py, in the style of httpx's
  `map_httpcore_exceptions`): a refused, reset or timed-out connection, or an endpoint answering 5xx,
  becomes `RedisUnavailable`; everything else stays what it is. The SDK re-raises whatever its
  transport raised (retries are off), so every caller of `get_redis()` sees mapped errors. A Redis
  reply error (`UpstashError('WRONGTYPE ...')`, a 400 from the endpoint) is a bug in the caller's data
  or code, never an outage: it propagates and becomes a logged 500, never a fail-open "allow".

Library code depends on `RedisClient`, the two calls it makes, so tests and other transports can be
injected instead of patching this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Protocol

import httpx
from upstash_redis.asyncio import Redis

from shared import transport
from shared.config import RedisSettings, http_settings, redis_settings
from shared.errors import RedisUnavailable
from shared.metrics import count_redis_round_trip

# Connections to the REST endpoint per process, all kept alive. Small on purpose: httpcore scans every
# pooled connection for each queued request, so 32 requests in flight through 8 connections ran 928
# calls/s here against 548 through the SDK's default pool (100, 20 kept alive); Lambda sends one
# request at a time per instance anyway, Vercel Fluid a few.
POOL_SIZE = 8


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


def map_transport_errors() -> AbstractContextManager[None]:
    """Map what is known to be a Redis outage to `RedisUnavailable`; re-raise everything else."""
    return transport.map_transport_errors(RedisUnavailable, "Redis")


@asynccontextmanager
async def redis_deadline(timeout_s: float) -> AsyncIterator[None]:
    """Bound Redis calls by a caller's own deadline (a rate-limit policy's `timeout_ms`); running out
    of it is an outage, like a lost connection."""
    with map_transport_errors():
        async with asyncio.timeout(timeout_s):
            yield


def _instrument(client: Redis, timeout_s: float) -> Redis:
    """Swap the SDK's httpx client for one with a timeout, a small pool kept alive (POOL_SIZE), and the
    boundary transport. Pinned SDK internals (upstash-redis 1.8.0: AsyncHttpClient._client);
    tests/shared/test_redis.py fails if they move."""
    # Connect, read and write are bounded; waiting for a free pooled connection is not (that is local
    # queueing under load, which callers bound with their own deadline, e.g. a rate-limit policy's).
    limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
    boundary = transport.BoundaryTransport(RedisUnavailable, "Redis", count_redis_round_trip, limits)
    client._http._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, pool=None), transport=boundary)
    return client


class RedisClients:
    """The client for one Redis endpoint, bound to the running event loop (`transport.LoopLocal`)."""

    def __init__(self, settings: RedisSettings | None = None, timeout_s: float | None = None) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._clients = transport.LoopLocal(self._new_client)

    @property
    def settings(self) -> RedisSettings:
        if self._settings is None:
            self._settings = redis_settings()
        return self._settings

    def _new_client(self) -> Redis:
        if self._timeout_s is None:
            self._timeout_s = http_settings().redis_timeout_s
        # No SDK-level retry: it resends after a lost reply, so an INCR or a rate-limit script could
        # count twice, and its fixed 3 s pause outlasts most function budgets (§9). Callers that can
        # safely retry do so themselves.
        client = Redis(self.settings.rest_url, self.settings.rest_token, rest_retries=0)
        return _instrument(client, self._timeout_s)

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
