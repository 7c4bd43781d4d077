"""RESP2 on one TCP connection, with raw replies.

We speak RESP ourselves (hiredis does the parsing) instead of going through redis-py's command layer,
because redis-py strips the `ERR ` code from error messages and applies response callbacks; Upstash
returns Redis's text verbatim and plain RESP2 shapes (upstash-redis-rest.md §6, §15).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Sequence
from typing import cast

import hiredis

Arg = bytes
Command = Sequence[Arg]
# A reply is what redis-server sent, untouched: bulk and simple strings as bytes, integers, nil as
# None, arrays as lists, and error replies as ReplyError values (they can sit inside an EXEC array).
type Reply = bytes | int | list[Reply] | ReplyError | None


class ReplyError(Exception):
    """An error reply from redis-server; `str(error)` is Redis's text, code included (`ERR ...`)."""


class ConnectionLost(ConnectionError):
    """The TCP connection to Redis failed; the connection must not be reused."""


def pack(commands: Sequence[Command]) -> bytes:
    # hiredis types its argument as a 1-tuple; any tuple of arguments is accepted.
    return b"".join(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]


class _Protocol(asyncio.Protocol):
    """Parses what Redis sends as it arrives and wakes the one caller waiting for enough replies.

    An asyncio protocol rather than streams: a reply costs one callback, no StreamReader buffer, read
    task or `wait_for` (the profile in README "Performance" put those at 7% of a gateway request).
    """

    def __init__(self) -> None:
        self.parser = hiredis.Reader(replyError=ReplyError)
        self.replies: deque[Reply] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.wanted = 0
        self.lost: BaseException | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        parser, replies = self.parser, self.replies
        parser.feed(data)
        try:
            reply = parser.gets()
            while reply is not False:
                replies.append(reply)
                reply = parser.gets()
        except hiredis.ProtocolError as exc:
            self.connection_lost(exc)
            if self.transport is not None:
                self.transport.abort()
            return
        waiter = self.waiter
        if waiter is not None and len(replies) >= self.wanted and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.lost is None:
            self.lost = exc or asyncio.IncompleteReadError(b"", None)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.lost)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Connection:
    """One RESP2 connection. Not shared: a caller leases it from a `Pool` for a whole request."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.broken = False

    @classmethod
    async def open(cls, host: str, port: int, timeout_s: float) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(loop.create_connection(_Protocol, host, port), timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to Redis at {host}:{port}: {exc or 'timed out'}") from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small request/reply pairs: without this, Nagle plus delayed ACK adds ~40 ms (§15).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(transport, protocol)

    async def roundtrip(self, commands: Sequence[Command], timeout_s: float | None) -> list[Reply]:
        """Send all `commands` in one write and read one reply for each, in order."""
        try:
            self._transport.write(pack(commands))
            return await self._take(len(commands), timeout_s)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, hiredis.ProtocolError) as exc:
            self.broken = True
            raise ConnectionLost(f"lost the connection to Redis: {exc or type(exc).__name__}") from exc

    async def _take(self, count: int, timeout_s: float | None) -> list[Reply]:
        protocol = self._protocol
        replies = protocol.replies
        if len(replies) < count:
            if protocol.lost is not None:
                raise protocol.lost
            loop = asyncio.get_running_loop()
            waiter = protocol.waiter = loop.create_future()
            protocol.wanted = count
            timer = None if timeout_s is None else loop.call_later(timeout_s, _expire, waiter)
            try:
                await waiter
            finally:
                protocol.waiter = None
                if timer is not None:
                    timer.cancel()
        return [replies.popleft() for _ in range(count)]

    def send(self, commands: Sequence[Command]) -> None:
        """Write commands without waiting for replies: for a pub/sub connection, whose replies arrive
        on their own schedule and are read by `next_reply`."""
        self._transport.write(pack(commands))

    async def next_reply(self) -> Reply:
        """The next reply or pushed message, however long it takes; ConnectionLost when Redis goes away."""
        try:
            (reply,) = await self._take(1, None)
        except (OSError, asyncio.IncompleteReadError, hiredis.ProtocolError) as exc:
            self.broken = True
            raise ConnectionLost(f"lost the connection to Redis: {exc or type(exc).__name__}") from exc
        return reply

    @property
    def stale(self) -> bool:
        """True once Redis closed its side (a restart, `CLIENT KILL`, idle timeout): never reuse it."""
        return self.broken or self._protocol.lost is not None or self._transport.is_closing()

    def close(self) -> None:
        self.broken = True
        self._transport.close()


async def open_connection(
    host: str, port: int, timeout_s: float, handshake: Sequence[Command] = (), *, setup: Sequence[Command] = ()
) -> Connection:
    """A new connection that has run the set-up commands (AUTH, SELECT) every connection needs, then
    `setup`, whose errors are ignored (a Redis may forbid CONFIG SET)."""
    connection = await Connection.open(host, port, timeout_s)
    if handshake or setup:
        replies = await connection.roundtrip([*handshake, *setup], timeout_s)
        refused = next((r for r in replies[: len(handshake)] if isinstance(r, ReplyError)), None)
        if refused is not None:
            connection.close()
            raise ConnectionLost(f"Redis refused the gateway's connection set-up: {refused}")
    return connection


class Pool:
    """Connections to one Redis node, each leased to one request at a time.

    Exclusive leases are what make `/multi-exec` safe under concurrency: MULTI ... EXEC always runs
    on a connection nobody else is writing to (the community proxy shares them: SRH issue #25).
    A connection that failed is dropped, so the pool heals by itself when Redis comes back.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int,
        connect_timeout_s: float,
        handshake: Sequence[Command] = (),
        setup: Sequence[Command] = (),
    ) -> None:
        self.host = host
        self.port = port
        self._handshake = list(handshake)
        self._setup = list(setup)  # run after the handshake; errors ignored (a Redis may forbid CONFIG)
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._connect_timeout_s = connect_timeout_s
        self._lost = 0  # connections dropped after a failure and not yet replaced
        self.reconnects = 0  # new connections opened to replace a lost one (the gateway's metrics)

    async def roundtrip(self, commands: Sequence[Command], timeout_s: float) -> list[Reply]:
        async with self._slots:
            connection = await self._lease()
            try:
                replies = await connection.roundtrip(commands, timeout_s)
            except BaseException:
                self._discard(connection)
                raise
            self._idle.append(connection)
            return replies

    async def _lease(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.stale:
                return connection
            self._discard(connection)
        connection = await open_connection(
            self.host, self.port, self._connect_timeout_s, self._handshake, setup=self._setup
        )
        if self._lost:  # it replaces one that Redis dropped (a restart, a timeout, `CLIENT KILL`)
            self._lost -= 1
            self.reconnects += 1
        return connection

    def _discard(self, connection: Connection) -> None:
        connection.close()
        self._lost += 1

    async def side_roundtrip(self, commands: Sequence[Command], timeout_s: float) -> list[Reply]:
        """On a connection of its own, outside the pool's limit, closed afterwards: for `SCRIPT KILL`
        while every pooled connection may be waiting on the script. AUTH only: during a busy script
        Redis still answers AUTH, but not SELECT."""
        handshake = [command for command in self._handshake if command[0] == b"AUTH"]
        connection = await open_connection(self.host, self.port, self._connect_timeout_s, handshake)
        try:
            return await connection.roundtrip(commands, timeout_s)
        finally:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
