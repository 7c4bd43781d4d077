"""Subscriptions over HTTP: `/subscribe/<channel>` and `/psubscribe/<pattern>` as Server-Sent Events,
the way the JavaScript SDK `@upstash/redis` (1.39) sends and reads them.

The SDK's `redis.subscribe([...])` sends one `POST {url}/subscribe/<channel>` per channel (several
channels in one path, `/subscribe/a/b`, work too) with `Accept: text/event-stream`, and reads each
`data: ` line as `type,channel,payload`. A stream carries, in order:

    data: subscribe,<channel>,<n>            once per channel; n counts this stream's channels, as Redis does
    data: message,<channel>,<payload>        the payload as published, commas and all
    data: psubscribe,<pattern>,<n>
    data: pmessage,<pattern>,<channel>,<payload>
    : ping                                   after --sse-heartbeat seconds without an event (proxies keep it)
    event: error / data: <reason>            last, when the gateway ends the stream (Redis lost, shutdown)

The stream ends when the client goes away (its subscriptions are dropped at once), when Redis does,
or when the reader falls `--sse-buffer` messages behind (then the connection is simply closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.types import Receive, Send

from emulators.redis_rest.commands import BadRequest
from emulators.redis_rest.pubsub import Kind, PubSubHub, Subscriber, event

log = logging.getLogger("emulators.redis_rest")

PING = b": ping\n\n"
SLOW_GRACE_S = 1.0  # how long a slow reader's last write may take before its connection is dropped
HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx would otherwise buffer the stream
]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat_s: float = 15.0
    buffer_messages: int = 1000


def subscriber_for(kind: Kind, rest: str, settings: StreamSettings) -> Subscriber:
    """The subscriber a path asks for: `rest` is what follows `/subscribe/`, one name per segment."""
    names = [unquote_to_bytes(segment) for segment in rest.split("/") if segment]
    if not names:
        what = "channel" if kind == "subscribe" else "pattern"
        raise BadRequest(f"ERR name at least one {what}: POST /{kind}/<{what}>")
    return Subscriber(kind, names, settings.buffer_messages)


def error_event(reason: str) -> bytes:
    # No commas: the SDK takes a data line with two commas for a message.
    return b"event: error\n" + event(reason.replace(",", ";").encode())


async def stream(
    hub: PubSubHub,
    subscriber: Subscriber,
    receive: Receive,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    heartbeat_s: float,
    changed: Callable[[], None] = lambda: None,
) -> None:
    """Attach `subscriber` and stream its events until someone ends it; `changed()` is called once it
    is attached and once it is detached (the gateway's workers publish their subscription figures).

    Raises ConnectionLost before anything is sent if Redis cannot be reached (the caller answers 503).
    """
    await hub.attach(subscriber)
    changed()
    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS + headers})
        confirm = subscriber.kind.encode()
        counts = enumerate(subscriber.names, start=1)
        await _write(send, b"".join(event(confirm, name, str(n).encode()) for n, name in counts))
        await _until_ended(subscriber, receive, send, heartbeat_s)
    except Exception:
        log.exception("subscription stream failed")
    finally:
        hub.detach(subscriber)
        changed()


async def _until_ended(subscriber: Subscriber, receive: Receive, send: Send, heartbeat_s: float) -> None:
    pump = asyncio.create_task(_pump(subscriber, send, heartbeat_s))
    gone = asyncio.create_task(_client_gone(receive))
    slow = asyncio.create_task(subscriber.overflowed.wait())
    tasks = (pump, gone, slow)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if slow.done() and not pump.done():
            # The pump ends the stream itself unless its write is stuck behind a full socket.
            await asyncio.wait((pump, gone), timeout=SLOW_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    if slow.done() and not slow.cancelled():
        # Cancelled mid-write, the response cannot be finished: returning makes the server close it.
        log.warning("closed a subscription stream: %s", subscriber.closed_reason)
    elif pump.done() and not pump.cancelled() and pump.exception() is not None:
        raise pump.exception()  # type: ignore[misc]


async def _pump(subscriber: Subscriber, send: Send, heartbeat_s: float) -> None:
    while True:
        frames = await subscriber.take(heartbeat_s)
        if subscriber.closed_reason is not None:
            await _write(send, frames + error_event(subscriber.closed_reason), more=False)
            return
        await _write(send, frames or PING)


async def _write(send: Send, body: bytes, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # the request body (the SDK sends `[]`) is of no interest
