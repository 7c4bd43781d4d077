"""Redis pub/sub for the gateway's SSE subscribers: one shared Redis connection per gateway process.

Each `/subscribe/...` or `/psubscribe/...` stream is a `Subscriber`. The `PubSubHub` keeps one Redis
connection in subscribed mode (RESP2) and a refcount per channel and pattern: SUBSCRIBE goes out when a
channel's first subscriber arrives, UNSUBSCRIBE when its last one leaves, so Redis sees one client
whatever the number of streams. Each message is framed once, as the JavaScript SDK reads it
(`data: message,<channel>,<payload>`), and appended to the bounded buffer of every subscriber of it; a
subscriber whose buffer is full is closed rather than allowed to grow (a slow reader).

If the connection drops, every subscriber is closed with the reason (the streams end; Redis keeps no
history to replay), and the next subscriber opens a new connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from emulators.redis_rest.resp import Command, Connection, ConnectionLost, Reply, open_connection

log = logging.getLogger("emulators.redis_rest")

Kind = Literal["subscribe", "psubscribe"]
_SUBSCRIBE: dict[Kind, bytes] = {"subscribe": b"SUBSCRIBE", "psubscribe": b"PSUBSCRIBE"}
_UNSUBSCRIBE: dict[Kind, bytes] = {"subscribe": b"UNSUBSCRIBE", "psubscribe": b"PUNSUBSCRIBE"}
# The confirmation Redis pushes for each name of those commands, one per name and in order.
_ACK_OF: dict[bytes, bytes] = {
    b"SUBSCRIBE": b"subscribe",
    b"PSUBSCRIBE": b"psubscribe",
    b"UNSUBSCRIBE": b"unsubscribe",
    b"PUNSUBSCRIBE": b"punsubscribe",
}


def event(*fields: bytes) -> bytes:
    """One SSE event whose data is the comma-joined fields: `data: message,chan,payload\\n\\n`.

    The JS SDK splits only on the first commas (three for `pmessage`), so commas inside a payload are
    safe. A line break cannot sit inside an SSE data line: as the SSE rules say, the text goes out as
    several `data:` lines (a standard EventSource joins them with `\\n`; the SDK reads each line alone).
    """
    data = b",".join(fields)
    if b"\n" in data or b"\r" in data:
        data = b"\ndata: ".join(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
    return b"data: " + data + b"\n\n"


class Subscriber:
    """One SSE stream: what it listens to, and its bounded buffer of events not yet written out."""

    def __init__(self, kind: Kind, names: Iterable[bytes], buffer_limit: int) -> None:
        self.kind = kind
        self.names = tuple(dict.fromkeys(names))  # `/subscribe/a/a` listens to `a` once, as Redis does
        self.closed_reason: str | None = None
        self.overflowed = asyncio.Event()
        self._limit = buffer_limit
        self._pending: deque[bytes] = deque()
        self._wakeup = asyncio.Event()

    def push(self, frame: bytes) -> bool:
        """Buffer one event; False if that overflowed the buffer and closed this subscriber."""
        if self.closed_reason is not None:
            return True
        if len(self._pending) >= self._limit:
            self.close(f"ERR subscriber too slow: {self._limit} messages waited unread (--sse-buffer)")
            self._pending.clear()
            self.overflowed.set()
            return False
        self._pending.append(frame)
        self._wakeup.set()
        return True

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self._wakeup.set()

    async def take(self, timeout_s: float) -> bytes:
        """Every event buffered so far, waiting up to `timeout_s` for one; b"" if none came."""
        if not self._pending and self.closed_reason is None:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._wakeup.wait()
            except TimeoutError:
                return b""
        self._wakeup.clear()
        frames = b"".join(self._pending)
        self._pending.clear()
        return frames


@dataclass(frozen=True, slots=True)
class HubFigures:
    subscribers: int
    channels: int
    patterns: int
    reconnects: int
    dropped: dict[str, int]


@dataclass(slots=True)
class _Ack:
    """A confirmation Redis owes us; `waiter` is set for SUBSCRIBE/PSUBSCRIBE, which callers wait on."""

    kind: bytes
    name: bytes
    waiter: asyncio.Future[None] | None


class ProtocolConfusion(Exception):
    """Redis pushed something a subscribed connection never sends: the connection is dropped."""


class PubSubHub:
    def __init__(
        self, host: str, port: int, *, handshake: Sequence[Command] = (), connect_timeout_s: float, timeout_s: float
    ) -> None:
        self._host = host
        self._port = port
        self._handshake = list(handshake)
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._connection: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._members: dict[Kind, dict[bytes, set[Subscriber]]] = {"subscribe": {}, "psubscribe": {}}
        self._confirmed: dict[tuple[Kind, bytes], asyncio.Future[None]] = {}
        self._acks: deque[_Ack] = deque()
        self._subscribers: set[Subscriber] = set()
        self._replacing = False  # the next connection replaces one that was lost
        self._reconnects = 0
        self._dropped: Counter[str] = Counter()

    def figures(self) -> HubFigures:
        return HubFigures(
            subscribers=len(self._subscribers),
            channels=len(self._members["subscribe"]),
            patterns=len(self._members["psubscribe"]),
            reconnects=self._reconnects,
            dropped=dict(self._dropped),
        )

    async def attach(self, subscriber: Subscriber) -> None:
        """Subscribe `subscriber` to its names; returns once Redis confirmed each of them.

        Raises ConnectionLost (and attaches nothing) when Redis cannot be reached or does not confirm.
        """
        connection = await self._connect()
        table = self._members[subscriber.kind]
        new: list[bytes] = []
        for name in subscriber.names:
            members = table.get(name)
            if members is None:
                members = table[name] = set()
                new.append(name)
                waiter = self._confirmed[(subscriber.kind, name)] = asyncio.get_running_loop().create_future()
                self._acks.append(_Ack(_ACK_OF[_SUBSCRIBE[subscriber.kind]], name, waiter))
            members.add(subscriber)
        self._subscribers.add(subscriber)
        if new:
            connection.send([(_SUBSCRIBE[subscriber.kind], *new)])
        waiters = {self._confirmed[(subscriber.kind, name)] for name in subscriber.names}
        # asyncio.wait, not gather: a waiter is shared with other subscribers, and must not be
        # cancelled when this one gives up.
        await asyncio.wait(waiters, timeout=self._timeout_s)
        if not all(w.done() and not w.cancelled() for w in waiters):
            self.detach(subscriber)
            raise ConnectionLost(f"Redis did not confirm {_SUBSCRIBE[subscriber.kind].decode()} within the timeout")

    def detach(self, subscriber: Subscriber) -> None:
        """Forget `subscriber`; names nobody else listens to are unsubscribed at Redis."""
        if subscriber not in self._subscribers:
            return
        self._subscribers.discard(subscriber)
        table = self._members[subscriber.kind]
        gone: list[bytes] = []
        for name in subscriber.names:
            members = table.get(name)
            if members is None:
                continue
            members.discard(subscriber)
            if not members:
                del table[name]
                self._confirmed.pop((subscriber.kind, name), None)
                gone.append(name)
        if gone and self._connection is not None:
            command = _UNSUBSCRIBE[subscriber.kind]
            self._acks.extend(_Ack(_ACK_OF[command], name, None) for name in gone)
            self._connection.send([(command, *gone)])

    def close_all(self, reason: str) -> None:
        """End every stream (the gateway is shutting down); each stream detaches itself."""
        for subscriber in list(self._subscribers):
            subscriber.close(reason)

    async def aclose(self) -> None:
        self.close_all("ERR the gateway is shutting down")
        if self._reader is not None:
            self._reader.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect(self) -> Connection:
        async with self._lock:  # concurrent first subscribers share one new connection
            if self._connection is not None and not self._connection.stale:
                return self._connection
            if self._connection is not None:
                self._lost(self._connection, "the connection was closed")
            connection = await open_connection(self._host, self._port, self._connect_timeout_s, self._handshake)
            if self._replacing:
                self._replacing = False
                self._reconnects += 1
            self._connection = connection
            self._reader = asyncio.create_task(self._read(connection), name="pubsub-reader")
            return connection

    async def _read(self, connection: Connection) -> None:
        try:
            while True:
                self._dispatch(await connection.next_reply())
        except ConnectionLost as exc:
            self._lost(connection, str(exc))
        except ProtocolConfusion as exc:
            log.warning("pub/sub connection dropped: %s", exc)
            self._lost(connection, str(exc))
        except Exception:  # a bug: end the streams rather than leave them waiting for nothing
            log.exception("pub/sub reader failed")
            self._lost(connection, "internal gateway error (see the gateway's log)")

    def _dispatch(self, reply: Reply) -> None:
        # [b"message", channel, payload], [b"pmessage", pattern, channel, payload], [b"subscribe", name, n] ...
        if not isinstance(reply, list) or len(reply) < 3 or not isinstance(reply[1], bytes):
            raise ProtocolConfusion(f"unexpected reply on the pub/sub connection: {reply!r:.200}")
        kind, name = reply[0], reply[1]
        if kind in (b"message", b"pmessage") and all(isinstance(field, bytes) for field in reply):
            members = self._members["subscribe" if kind == b"message" else "psubscribe"].get(name)
            self._fan_out(members, reply)  # type: ignore[arg-type]  # all bytes: checked just above
        elif self._acks and self._acks[0].kind == kind and self._acks[0].name == name:
            waiter = self._acks.popleft().waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        else:
            raise ProtocolConfusion(f"unexpected reply on the pub/sub connection: {reply!r:.200}")

    def _fan_out(self, members: set[Subscriber] | None, fields: list[bytes]) -> None:
        if not members:
            return  # unsubscribed here already; Redis has not processed the UNSUBSCRIBE yet
        frame = event(*fields)
        for subscriber in tuple(members):  # a push may close a slow subscriber, never change the set
            if not subscriber.push(frame):
                self._dropped["slow_reader"] += 1

    def _lost(self, connection: Connection, reason: str) -> None:
        if self._connection is not connection:
            return
        connection.close()
        self._connection = None
        self._replacing = True
        for ack in self._acks:
            if ack.waiter is not None:
                ack.waiter.cancel()  # the subscriber waiting on it answers 503
        self._acks.clear()
        self._confirmed.clear()
        for table in self._members.values():
            table.clear()
        for subscriber in self._subscribers:
            subscriber.close(f"ERR lost the connection to Redis: {reason}")
        self._dropped["redis_lost"] += len(self._subscribers)
        self._subscribers.clear()
