"""The one way the library gets a QStash client: the official `qstash.AsyncQStash`, one per event loop.

Configured from `QSTASH_URL` and `QSTASH_TOKEN` (the SDK reads neither token nor keys by itself:
reference qstash.md §1), with the SDK's retry off (it sleeps after every failed attempt, about 31.8 s
in all before an error surfaces when QStash is down) and the library's boundary transport under it:
a refused connection, a timeout or a 5xx answer is `QStashUnavailable`; a 4xx stays the SDK's
`QStashError`, a bug in what we sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from shared import transport
from shared.config import QStashSettings, qstash_settings
from shared.errors import QStashUnavailable

if TYPE_CHECKING:
    from qstash import AsyncQStash

# The SDK's own timeouts (qstash/http.py DEFAULT_TIMEOUT): long reads for its list calls.
TIMEOUT = httpx.Timeout(60, connect=5)


class QStashClients:
    """The QStash client for the running event loop (`transport.LoopLocal`)."""

    def __init__(self, settings: QStashSettings | None = None) -> None:
        self._settings = settings
        self._clients = transport.LoopLocal(self._new_client)

    @property
    def settings(self) -> QStashSettings:
        if self._settings is None:
            self._settings = qstash_settings()
        return self._settings

    def _new_client(self) -> AsyncQStash:
        from qstash import AsyncQStash  # imported on first use: only functions that publish pay for it

        client = AsyncQStash(self.settings.token, retry=False, base_url=self.settings.url)
        # Pinned SDK internals (qstash 3.4.0: AsyncHttpClient._client); tests/shared/test_qstash.py
        # fails if they move.
        boundary = transport.BoundaryTransport(QStashUnavailable, "QStash")
        client.http._client = httpx.AsyncClient(timeout=TIMEOUT, transport=boundary)
        return client

    def get(self) -> AsyncQStash:
        return self._clients.get()

    async def aclose(self) -> None:
        client = self._clients.forget()
        if client is not None:
            await client.http._client.aclose()


_default = QStashClients()


def get_qstash() -> AsyncQStash:
    """The QStash client for the running event loop, configured from the environment."""
    return _default.get()


async def close_qstash() -> None:
    """Close the running loop's default client (see shared/redis.py `close_redis`)."""
    await _default.aclose()
