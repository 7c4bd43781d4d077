"""One delivery attempt: the request QStash sends (reference §5.2) and what came back.

The destination receives the published method, URL (query included) and body bytes unchanged, each
`Upstash-Forward-X` header as `X`, the original Content-Type, `User-Agent: Upstash-QStash`,
`Upstash-Message-Id`, `Upstash-Retried`, `Upstash-Caller-Ip`, `Upstash-Topic-Name` (URL groups),
`Upstash-Schedule-Id` (schedules) and a fresh `Upstash-Signature` signed with the current key at
send time. `--route` may change where the request goes, never the signed `sub`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from emulators.qstash.model import AttemptResult, Message
from emulators.qstash.options import HeaderMap, canonical_header
from emulators.qstash.routing import RouteTable
from emulators.qstash.signing import SigningKeys, sign_delivery

# The free plan's limit on one HTTP call (upstash/docs qstash/features/retry.mdx: 15 minutes).
DEFAULT_ATTEMPT_TIMEOUT_MS = 15 * 60 * 1000
MAX_RESPONSE_BYTES = 1024 * 1024  # kept for the DLQ and callbacks; the rest is read and dropped
# Framing headers belong to this hop; a forwarded one would contradict the body actually sent.
_NOT_FORWARDED = frozenset(("Host", "Content-Length", "Transfer-Encoding", "Connection"))


class ClientLanes:
    """One httpx.AsyncClient per concurrent attempt, reused LIFO so keep-alive connections stay warm.

    httpx's connection pool slows down as more concurrent requests share it (measured on loopback:
    one client at 32 concurrent requests ~320 req/s, 32 clients ~900 req/s), so each in-flight attempt
    gets a client of its own. One TLS context serves them all: building one per client costs ~30 ms.
    """

    def __init__(self) -> None:
        self._idle: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        self._tls = httpx.create_ssl_context()

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[httpx.AsyncClient]:
        client = self._idle.pop() if self._idle else self._new()
        try:
            yield client
        finally:
            self._idle.append(client)

    def _new(self) -> httpx.AsyncClient:
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback deliveries.
        client = httpx.AsyncClient(verify=self._tls, trust_env=False, follow_redirects=False)
        self._all.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()
        self._all.clear()
        self._idle.clear()


class Deliverer:
    def __init__(self, lanes: ClientLanes, keys: SigningKeys, routes: RouteTable) -> None:
        self._lanes = lanes
        self._keys = keys
        self._routes = routes

    async def attempt(self, message: Message) -> AttemptResult:
        async with self._lanes.lane() as client:
            return await self._attempt(client, message)

    async def _attempt(self, client: httpx.AsyncClient, message: Message) -> AttemptResult:
        timeout_s = (message.options.timeout_ms or DEFAULT_ATTEMPT_TIMEOUT_MS) / 1000
        try:
            request = client.build_request(
                message.options.method,
                self._routes.rewrite(message.url),
                headers=self._headers(message),
                content=message.body,
                timeout=httpx.Timeout(timeout_s),
            )
            async with asyncio.timeout(timeout_s):
                return await _send(client, request)
        except TimeoutError:
            return AttemptResult(None, error=f"timed out after {timeout_s:g}s")
        # Connection refused or reset, protocol errors, httpx's own timeouts, a URL or header value
        # that cannot go on the wire: each is a failed attempt, never a crash.
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError) as exc:
            return AttemptResult(None, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _headers(self, message: Message) -> list[tuple[str, str]]:
        headers = [(k, v) for k, v in message.options.forward_headers if k not in _NOT_FORWARDED]
        if message.options.content_type is not None:
            headers.append(("Content-Type", message.options.content_type))
        headers += [
            ("User-Agent", "Upstash-QStash"),
            ("Upstash-Message-Id", message.message_id),
            ("Upstash-Retried", str(message.retried)),
            ("Upstash-Caller-Ip", message.caller_ip),
            ("Upstash-Signature", sign_delivery(self._keys.current, message.url, message.body, int(time.time()))),
        ]
        if message.topic_name is not None:
            headers.append(("Upstash-Topic-Name", message.topic_name))
        if message.schedule_id is not None:
            headers.append(("Upstash-Schedule-Id", message.schedule_id))
        return headers


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> AttemptResult:
    response = await client.send(request, stream=True)
    try:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            if len(body) < MAX_RESPONSE_BYTES:
                body += chunk[: MAX_RESPONSE_BYTES - len(body)]
    finally:
        await response.aclose()
    return AttemptResult(response.status_code, _header_map(response.headers), bytes(body))


def _header_map(headers: httpx.Headers) -> HeaderMap:
    result: HeaderMap = {}
    for name, value in headers.multi_items():
        result.setdefault(canonical_header(name), []).append(value)
    return result
