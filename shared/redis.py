"""The one way functions get a Redis client: the official `upstash_redis.asyncio.Redis`.

One client for the running event loop, created on first use and reused by every later invocation on it.
Mangum runs every invocation of a warm Lambda on one loop, so there it is one client for the life of
the container. httpx connections belong to the loop that opened them; a client reused on another loop
fails its first call and, with the SDK's default retry, silently waits 3 s (reference §2, G10). A new
loop gets a new client, so that never happens, whatever runtime or test suite drives us.
"""

from __future__ import annotations

import asyncio
import weakref

from upstash_redis.asyncio import Redis

from shared.config import RedisSettings, redis_settings


class RedisClients:
    """The client for one Redis endpoint, bound to the running event loop.

    Only the current loop's client is kept: clients hold their loop (through pooled connections), so
    a map from loop to client would keep every dead loop alive. A client left behind by a loop that
    ended is simply dropped, and its sockets close when it is collected.
    """

    def __init__(self, settings: RedisSettings | None = None) -> None:
        self._settings = settings
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
            # No SDK-level retry: it resends after a lost reply, so an INCR or a rate-limit script
            # could count twice, and its fixed 3 s pause outlasts most function budgets (§9). Callers
            # that can safely retry do so themselves.
            self._client = Redis(self.settings.rest_url, self.settings.rest_token, rest_retries=0)
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
