"""A small HTTP/1.1 client on asyncio's protocols: POST a body to one origin, kept-alive connections.

Made for one job, carrying the Redis REST calls (shared/redis_http.py), where a call's cost is mostly
client CPU: httpx and httpcore spent about five times the round trip per call, aiohttp costs a few
hundred ms to import at every cold start, and pyreqwest (Rust) aborted the interpreter at exit about
one run in ten (its runtime thread still touching Python during finalization). bench/redis_client.py
measures all of them side by side.

What it does, and nothing more:
- `POST` with a body and headers; a response framed by `Content-Length`, `Transfer-Encoding: chunked`
  or the connection's end;
- connections kept alive and reused, one request at a time each; one closed by the server (it said
  `Connection: close`, or hung up while idle) is dropped, and the next request opens a new one;
- one deadline per request covering connect, TLS handshake, write and read; on expiry the connection
  is closed, since its state is unknown;
- TLS verified against the certifi bundle httpx used (or `$SSL_CERT_FILE`), the context built once
  per process, on first use.

Failures are `ConnectionError` (refused, reset, closed early, not HTTP) or `TimeoutError`: the caller
maps both to its service being unavailable. No retry here: a request resent after a lost reply could
run twice.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit


class ProtocolError(ConnectionError):
    """The peer answered something that is not an HTTP/1.1 response."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]  # lower-case names; a repeated header keeps its last value
    body: bytes


def _tls_context() -> ssl.SSLContext:
    """Verifying against `$SSL_CERT_FILE` when set (a private CA in front of a self-hosted gateway), as
    httpx did, else against certifi's bundle."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE") or None)


@cache
def _tls_context_for(cafile: str | None) -> ssl.SSLContext:
    if cafile is None:
        import certifi  # only where TLS is used: loopback development never pays for the bundle

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses the response to the request in flight as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head: tuple[int, dict[bytes, bytes], int] | None = None  # status, headers, body start

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None:
            self._parse(eof=False)

    def eof_received(self) -> bool:
        self.closed = True
        if self._waiter is not None:
            self._parse(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection lost before the response was complete ({exc or 'closed'})"))

    # the client's side
    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None, "not connected"
        assert self._waiter is None, "one request at a time"
        self._waiter = asyncio.get_running_loop().create_future()
        self._buffer.clear()
        self._head = None
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _parse(self, eof: bool) -> None:
        try:
            response = self._response(eof)
        except ProtocolError as exc:
            self.close()
            self._fail(exc)
            return
        if response is None:
            if eof:
                self._fail(ConnectionError("the server closed the connection before the response was complete"))
            return
        waiter, self._waiter = self._waiter, None
        if response.headers.get(b"connection", b"").lower() == b"close":
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _response(self, eof: bool) -> Response | None:
        """The complete response in the buffer, or None while bytes are missing."""
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    raise ProtocolError("response head over 64 KiB")
                return None
            self._head = (*_parse_head(bytes(buffer[:end])), end + 4)
        status, headers, start = self._head
        if status in (204, 304):
            return Response(status, headers, b"")
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = _dechunk(buffer, start)
        elif b"content-length" in headers:
            try:
                length = int(headers[b"content-length"])
            except ValueError:
                raise ProtocolError("malformed Content-Length") from None
            body = bytes(buffer[start : start + length]) if len(buffer) - start >= length else None
        elif eof:  # framed by the end of the connection
            body = bytes(buffer[start:])
            self.closed = True
        else:
            return None
        return None if body is None else Response(status, headers, body)


def _parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.1 response: {lines[0][:40]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"malformed header line: {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _dechunk(buffer: bytearray, start: int) -> bytes | None:
    """The body of a complete chunked message starting at `start`, or None while it is incomplete."""
    pieces: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            raise ProtocolError("malformed chunk size") from None
        position = line_end + 2
        if size == 0:  # the last chunk, then trailer lines up to an empty one
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return None
                if line_end == position:
                    return b"".join(pieces)
                position = line_end + 2
        if len(buffer) < position + size + 2:
            return None
        pieces.append(bytes(buffer[position : position + size]))
        position += size + 2


class Http1Client:
    """POST requests to one origin (`http://` or `https://host[:port]`), each within `timeout_s`."""

    def __init__(self, origin: str, timeout_s: float) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {origin!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._host_header = parts.netloc.rpartition("@")[2].encode()
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, path: str, headers: bytes, body: bytes) -> Response:
        """`headers`: ready-made `Name: value\\r\\n` lines (Host, Content-Length are added here)."""
        if self._closed:
            raise ConnectionError("the client is closed")
        request = b"".join(
            (
                b"POST ", path.encode(), b" HTTP/1.1\r\nHost: ", self._host_header,
                b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n", headers, b"\r\n", body,
            )
        )  # fmt: skip
        connection = self._checkout()
        try:
            async with asyncio.timeout(self._timeout_s):
                if connection is None:
                    connection = await self._connect()
                response = await connection.send(request)
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        if not connection.closed and not self._closed:
            self._idle.append(connection)
        return response

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _checkout(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.transport is not None and not connection.transport.is_closing():
                return connection
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=_tls_context() if self._tls else None,
            server_hostname=self._host if self._tls else None,
        )
        return connection
