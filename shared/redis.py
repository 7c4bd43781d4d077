"""The one way functions get a Redis client: the official `upstash_redis.asyncio.Redis`.

One client for the running event loop, created on first use and reused by every later invocation on it.
Mangum runs every invocation of a warm Lambda on one loop, so there it is one client for the life of
the container. httpx connections belong to the loop that opened them; a client reused on another loop
fails its first call and, with the SDK's default retry, silently waits 3 s (reference §2, G10). A new
loop gets a new client, so that never happens, whatever runtime or test suite drives us.

The SDK's httpx client is replaced by one with this library's boundary in its transport:
- a timeout (the SDK has none, so a stalled endpoint would hang the function until the platform kills
  it: G9);
- one count per round trip, into the request's metrics (shared/metrics.py) for the request log;
- **the one mapping of failures** (`map_transport_errors`, in the style of httpx's
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
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

import httpx
from upstash_redis.asyncio import Redis

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

# What counts as "Redis is unavailable": the transport failed, or a deadline ran out. Nothing else.
_UNAVAILABLE: tuple[type[BaseException], ...] = (httpx.TransportError, TimeoutError)


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Map what is known to be an outage to `RedisUnavailable`; re-raise everything else unchanged."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise RedisUnavailable(f"Redis did not answer ({type(exc).__name__})") from exc


@asynccontextmanager
async def redis_deadline(timeout_s: float) -> AsyncIterator[None]:
    """Bound Redis calls by a caller's own deadline (a rate-limit policy's `timeout_ms`); running out
    of it is an outage, like a lost connection."""
    with map_transport_errors():
        async with asyncio.timeout(timeout_s):
            yield


class _BoundaryTransport(httpx.AsyncHTTPTransport):
    """httpx's transport plus this library's boundary: count the round trip, map failures once."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        count_redis_round_trip()
        with map_transport_errors():
            response = await super().handle_async_request(request)
        if response.status_code >= 500:  # the endpoint (or the proxy in front of it) is down
            await response.aclose()
            raise RedisUnavailable(f"the Redis REST endpoint answered HTTP {response.status_code}")
        return response


def _instrument(client: Redis, timeout_s: float) -> Redis:
    """Swap the SDK's httpx client for one with a timeout, a small pool kept alive (POOL_SIZE), and the
    boundary transport. Pinned SDK internals (upstash-redis 1.8.0: AsyncHttpClient._client);
    tests/shared/test_redis.py fails if they move."""
    # Connect, read and write are bounded; waiting for a free pooled connection is not (that is local
    # queueing under load, which callers bound with their own deadline, e.g. a rate-limit policy's).
    limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
    client._http._client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, pool=None), transport=_BoundaryTransport(limits=limits)
    )
    return client


class RedisClients:
    """The client for one Redis endpoint, bound to the running event loop.

    Only the current loop's client is kept: clients hold their loop (through pooled connections), so
    a map from loop to client would keep every dead loop alive. A client left behind by a loop that
    ended is simply dropped, and its sockets close when it is collected.
    """

    def __init__(self, settings: RedisSettings | None = None, timeout_s: float | None = None) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._client: Redis | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    @property
    def settings(self) -> RedisSettings:
        if self._settings is None:
            self._settings = redis_settings()
        return self._settings

    def get(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is None or self._loop() is not loop:
            if self._timeout_s is None:
                self._timeout_s = http_settings().redis_timeout_s
            # No SDK-level retry: it resends after a lost reply, so an INCR or a rate-limit script
            # could count twice, and its fixed 3 s pause outlasts most function budgets (§9). Callers
            # that can safely retry do so themselves.
            client = Redis(self.settings.rest_url, self.settings.rest_token, rest_retries=0)
            self._client = _instrument(client, self._timeout_s)
            self._loop = weakref.ref(loop)
        return self._client

    async def aclose(self) -> None:
        """Close the running loop's client: for scripts that end their loop (`asyncio.run`) on purpose."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()


_default = RedisClients()


def get_redis() -> Redis:
    """The Redis client for the running event loop, configured from the environment."""
    return _default.get()
