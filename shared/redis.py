"""The one way functions get a Redis client: the official `upstash_redis.asyncio.Redis`.

One client for the running event loop, created on first use and reused by every later invocation on it.
Mangum runs every invocation of a warm Lambda on one loop, so there it is one client for the life of
the container. httpx connections belong to the loop that opened them; a client reused on another loop
fails its first call and, with the SDK's default retry, silently waits 3 s (reference §2, G10). A new
loop gets a new client, so that never happens, whatever runtime or test suite drives us.

Two things the SDK lacks are added to its httpx client: a timeout (it has none, so a stalled endpoint
would hang the function until the platform kills it: G9) and a per-request count of round trips, which
the request log reports (`round_trips()`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import httpx
from upstash_redis.asyncio import Redis

from shared.config import RedisSettings, http_settings, redis_settings
from shared.errors import RedisUnavailable

# Connections to the REST endpoint per process, all kept alive. Small on purpose: httpcore scans every
# pooled connection for each queued request, so 32 requests in flight through 8 connections ran 928
# calls/s here against 548 through the SDK's default pool (100, 20 kept alive); Lambda sends one
# request at a time per instance anyway, Vercel Fluid a few.
POOL_SIZE = 8
_round_trips: ContextVar[list[int] | None] = ContextVar("stashkit_redis_round_trips", default=None)


def count_round_trips() -> list[int]:
    """Start counting Redis HTTP calls in this context (one request); read `counter[0]` at the end."""
    counter = [0]
    _round_trips.set(counter)
    return counter


async def _on_request(_request: httpx.Request) -> None:
    counter = _round_trips.get()
    if counter is not None:
        counter[0] += 1


def _instrument(client: Redis, timeout_s: float) -> Redis:
    """Swap the SDK's httpx client for one with a timeout, a small pool kept alive (POOL_SIZE), and the
    round-trip counter. Pinned SDK internals (upstash-redis 1.8.0: AsyncHttpClient._client);
    tests/shared/test_redis.py fails if they move."""
    # Connect, read and write are bounded; waiting for a free pooled connection is not (that is local
    # queueing under load, which callers bound with their own deadline, e.g. a rate-limit policy's).
    client._http._client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, pool=None),
        limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
        event_hooks={"request": [_on_request], "response": []},
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


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn transport failures (refused, reset, timed out) into `RedisUnavailable`, once, here."""
    try:
        yield
    except httpx.TransportError as exc:
        raise RedisUnavailable(f"Redis did not answer: {type(exc).__name__}") from exc
