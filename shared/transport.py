"""The boundary between this library and the HTTP APIs it calls through httpx (QStash, through its SDK):
an httpx transport that maps failures once, in the style of httpx's own `map_httpcore_exceptions`, and
the one-client-per-event-loop holder every client uses (the Redis client too: shared/redis.py).

A refused, reset or timed-out connection, or an answer with a 5xx status, becomes the caller's
"unavailable" error (`QStashUnavailable`); everything else passes through unchanged, so a bug never
looks like an outage. The SDKs re-raise whatever their transport raised when their own retries are
off, which is how every call through them gets the mapping. Redis calls no longer go through httpx:
shared/redis_http.py maps its own transport's failures the same way, to `RedisUnavailable`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from shared.errors import StashkitError

# What counts as "unavailable": the transport failed, or a deadline ran out. Nothing else.
_UNAVAILABLE: tuple[type[BaseException], ...] = (httpx.TransportError, TimeoutError)


@contextmanager
def map_transport_errors(unavailable: type[StashkitError], service: str) -> Iterator[None]:
    """Map what is known to be an outage to `unavailable`; re-raise everything else unchanged."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise unavailable(f"{service} did not answer ({type(exc).__name__})") from exc


class BoundaryTransport(httpx.AsyncHTTPTransport):
    """httpx's transport plus the boundary: an optional per-request hook, and failures mapped once."""

    def __init__(
        self,
        unavailable: type[StashkitError],
        service: str,
        on_request: Callable[[], None] | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(limits=limits or httpx.Limits())
        self._unavailable = unavailable
        self._service = service
        self._on_request = on_request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._on_request is not None:
            self._on_request()
        with map_transport_errors(self._unavailable, self._service):
            response = await super().handle_async_request(request)
        if response.status_code >= 500:  # the service (or the proxy in front of it) is down
            await response.aclose()
            raise self._unavailable(f"{self._service} answered HTTP {response.status_code}")
        return response


class LoopLocal[T]:
    """One client per running event loop, made by `factory` on first use on that loop.

    httpx connections belong to the loop that opened them: a client reused on another loop fails its
    first call (and with an SDK's default retry, waits seconds first: reference §2, G10). Only the
    current loop's client is kept, since clients hold their loop through pooled connections and a map
    from loop to client would keep every dead loop alive; one left behind by a loop that ended is
    dropped, and its sockets close when it is collected.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is None or self._loop() is not loop:
            self._value = self._factory()
            self._loop = weakref.ref(loop)
        return self._value

    def forget(self) -> T | None:
        """Drop the current client and return it, for the caller to close."""
        value, self._value, self._loop = self._value, None, None
        return value
