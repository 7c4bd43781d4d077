"""Subscriptions through the gateway: `/subscribe` and `/psubscribe` as server-sent events, read by the
official JavaScript SDK and by plain httpx, on one shared Redis connection that leaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis as redis_py
from upstash_redis import Redis

from tests.conftest import Gateway, start_gateway
from tests.servers import ROOT, Process, RedisCluster, redis_server

HEARTBEAT_S = 0.2
BUFFER_MESSAGES = 50


@pytest.fixture(scope="module")
def node() -> Iterator[Process]:
    process = redis_server().start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gateway(node: Process) -> Iterator[Gateway]:
    """A gateway of this module's own, so counts of subscriptions and Redis clients are ours alone."""
    handle = start_gateway(
        f"redis://127.0.0.1:{node.port}", "--sse-heartbeat", str(HEARTBEAT_S), "--sse-buffer", str(BUFFER_MESSAGES)
    )
    yield handle
    handle.process.stop()


@pytest.fixture
def sdk(gateway: Gateway) -> Iterator[Redis]:
    with Redis(gateway.url, gateway.token, rest_retries=0) as client:
        yield client


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {gateway.token}", "Accept": "text/event-stream"}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, limits=limits, timeout=10) as client:
        yield client


class Stream:
    """One open SSE response: its data lines, one at a time (comments and blank lines skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.pings = 0

    async def next(self, timeout_s: float = 5) -> str:
        async with asyncio.timeout(timeout_s):
            async for line in self._lines:
                if line == ": ping":
                    self.pings += 1
                elif line:
                    return line
        raise EOFError("the stream ended")

    async def pings_until(self, count: int, timeout_s: float = 5) -> None:
        """Read until `count` heartbeats have arrived (and no data line came first)."""
        async with asyncio.timeout(timeout_s):
            while self.pings < count:
                line = await anext(self._lines)
                if line == ": ping":
                    self.pings += 1
                else:
                    assert line == "", f"a data line before the heartbeats: {line}"

    async def rest(self) -> list[str]:
        """Every line left until the gateway ends the stream."""
        return [line async for line in self._lines if line]


@asynccontextmanager
async def subscribe(http: httpx.AsyncClient, path: str) -> AsyncIterator[Stream]:
    async with http.stream("POST", path, content=b"[]") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        yield Stream(response)


def publish_through_gateway(gateway: Gateway, channel: str, *messages: str) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    body = [["PUBLISH", channel, message] for message in messages]
    response = httpx.post(f"{gateway.url}/pipeline", json=body, headers=headers)
    assert response.status_code == 200


def redis_numsub(node: Process, *channels: str) -> dict[str, int]:
    with redis_py.Redis(port=node.port) as client:
        return {name.decode(): count for name, count in client.pubsub_numsub(*channels)}


def redis_numpat(node: Process) -> int:
    with redis_py.Redis(port=node.port) as client:
        return int(client.pubsub_numpat())


async def wait_for_open_subscriptions(gateway: Gateway, wanted: int, timeout_s: float = 10) -> None:
    """Poll /__stats until the gateway holds `wanted` streams (a client's close reaches it a moment later)."""
    deadline = time.monotonic() + timeout_s
    while (open_now := (await asyncio.to_thread(gateway.stats))["subscriptions"]["open"]) != wanted:
        assert time.monotonic() < deadline, f"{open_now} subscriptions open, waited for {wanted}"
        await asyncio.sleep(0.02)


async def test_subscribe_streams_confirmations_and_messages_as_the_sdk_reads_them(
    http: httpx.AsyncClient, gateway: Gateway, sdk: Redis, tag: str
) -> None:
    async with subscribe(http, f"/subscribe/{tag}a/{tag}b") as stream:
        assert await stream.next() == f"data: subscribe,{tag}a,1"
        assert await stream.next() == f"data: subscribe,{tag}b,2"
        assert sdk.publish(f"{tag}a", "hello, world") == 1
        assert sdk.publish(f"{tag}b", '{"x": [1, 2], "y": "p,q"}') == 1
        assert await stream.next() == f"data: message,{tag}a,hello, world"
        assert await stream.next() == f'data: message,{tag}b,{{"x": [1, 2], "y": "p,q"}}'
        # SSE cannot carry a line break inside a data line: it becomes several data lines.
        sdk.publish(f"{tag}a", "two\nlines")
        assert [await stream.next(), await stream.next()] == [f"data: message,{tag}a,two", "data: lines"]


async def test_psubscribe_streams_pattern_messages_with_their_channel(
    http: httpx.AsyncClient, sdk: Redis, tag: str
) -> None:
    async with subscribe(http, f"/psubscribe/{tag}user:*") as stream:
        assert await stream.next() == f"data: psubscribe,{tag}user:*,1"
        sdk.publish(f"{tag}other:1", "not for us")
        sdk.publish(f"{tag}user:1", '{"id":1}')
        assert await stream.next() == f'data: pmessage,{tag}user:*,{tag}user:1,{{"id":1}}'


async def test_every_subscriber_of_a_channel_gets_each_message_over_one_redis_subscription(
    http: httpx.AsyncClient, gateway: Gateway, node: Process, sdk: Redis, tag: str
) -> None:
    channel = f"{tag}shared"
    async with subscribe(http, f"/subscribe/{channel}") as first, subscribe(http, f"/subscribe/{channel}") as second:
        # Each stream counts its own channels, as if it were its own Redis connection.
        assert await first.next() == f"data: subscribe,{channel},1"
        assert await second.next() == f"data: subscribe,{channel},1"
        assert redis_numsub(node, channel) == {channel: 1}
        assert gateway.stats()["subscriptions"] == {"open": 2, "channels": 1, "patterns": 0}
        assert sdk.publish(channel, "m1") == 1  # Redis counts the gateway's connection once
        assert await first.next() == f"data: message,{channel},m1"
        assert await second.next() == f"data: message,{channel},m1"
    await wait_for_open_subscriptions(gateway, 0)
    assert redis_numsub(node, channel) == {channel: 0}


async def test_idle_stream_gets_heartbeats(http: httpx.AsyncClient, sdk: Redis, tag: str) -> None:
    async with subscribe(http, f"/subscribe/{tag}quiet") as stream:
        await stream.next()
        await stream.pings_until(3)  # at --sse-heartbeat 0.2 s
        sdk.publish(f"{tag}quiet", "after the pings")
        assert await stream.next() == f"data: message,{tag}quiet,after the pings"


async def test_a_thousand_subscriptions_opened_and_closed_leave_nothing_behind(
    http: httpx.AsyncClient, gateway: Gateway, node: Process, tag: str
) -> None:
    channels = [f"{tag}c{i % 10}" for i in range(500)] + [f"{tag}solo{i}" for i in range(250)]
    patterns = [f"{tag}p{i % 5}:*" for i in range(250)]
    paths = [f"/subscribe/{c}" for c in channels] + [f"/psubscribe/{p}" for p in patterns]

    async def open_and_close(path: str) -> str:
        async with subscribe(http, path) as stream:
            return await stream.next()

    confirmations: list[str] = []
    for start in range(0, len(paths), 100):  # 100 streams open at once
        confirmations += await asyncio.gather(*(open_and_close(path) for path in paths[start : start + 100]))
    assert len(confirmations) == 1000
    assert all(line.startswith(("data: subscribe,", "data: psubscribe,")) for line in confirmations)
    await wait_for_open_subscriptions(gateway, 0)
    assert gateway.stats()["subscriptions"] == {"open": 0, "channels": 0, "patterns": 0}
    assert set(redis_numsub(node, *set(channels)).values()) == {0}
    assert redis_numpat(node) == 0


def gateway_rss_kib(gateway: Gateway) -> int:
    assert gateway.process.proc is not None
    status = Path(f"/proc/{gateway.process.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


async def test_a_reader_that_stops_reading_is_disconnected_and_others_keep_receiving(
    http: httpx.AsyncClient, gateway: Gateway, tag: str
) -> None:
    channel = f"{tag}firehose"
    # A subscriber that never reads: a raw socket with a small receive buffer.
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = gateway.url.removeprefix("http://").split(":")
    stalled.connect((host, int(port)))
    stalled.sendall(
        f"POST /subscribe/{channel} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gateway.token}\r\n"
        "Content-Length: 2\r\n\r\n[]".encode()
    )
    payload = "x" * 100_000
    batches, per_batch = 30, 10  # 30 MB in all: past the socket buffers (~4 MB) and --sse-buffer (5 MB)
    try:
        async with subscribe(http, f"/subscribe/{channel}") as reader:
            await reader.next()
            await wait_for_open_subscriptions(gateway, 2)
            rss_before = gateway_rss_kib(gateway)
            headers = {"Authorization": f"Bearer {gateway.token}"}
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as publisher:
                for _ in range(batches):
                    body = [["PUBLISH", channel, payload]] * per_batch
                    assert (await publisher.post("/pipeline", json=body)).status_code == 200
                    for _ in range(per_batch):  # the healthy reader keeps up, well within its buffer
                        assert await reader.next(timeout_s=10) == f"data: message,{channel},{payload}"
            await wait_for_open_subscriptions(gateway, 1)  # the stalled one was closed
            assert gateway_rss_kib(gateway) - rss_before < 12 * 1024  # it never held the 30 MB
        stalled.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while stalled.recv(65536):  # what the kernel had buffered, then the gateway's close
                pass
    finally:
        stalled.close()


async def test_redis_going_away_ends_streams_and_new_subscribers_reconnect(tag: str) -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}", "--sse-heartbeat", "0.2")
    headers = {"Authorization": f"Bearer {gateway.token}"}
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as http:
            async with subscribe(http, f"/subscribe/{tag}c") as stream:
                await stream.next()
                node.stop()
                rest = await asyncio.wait_for(stream.rest(), timeout=5)
            assert rest[0] == "event: error"
            assert rest[1].startswith("data: ERR lost the connection to Redis")
            refused = await http.post(f"/subscribe/{tag}c")
            assert refused.status_code == 503
            assert "cannot reach Redis" in refused.json()["error"]
            node = redis_server(node.port).start()
            async with subscribe(http, f"/subscribe/{tag}c") as stream:
                assert await stream.next() == f"data: subscribe,{tag}c,1"
                publish_through_gateway(gateway, f"{tag}c", "back")
                assert await stream.next() == f"data: message,{tag}c,back"
        assert gateway.stats()["subscriptions"]["open"] == 0
    finally:
        gateway.process.stop()
        node.stop()


async def test_stopping_the_gateway_ends_open_streams_and_it_exits(tag: str) -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    headers = {"Authorization": f"Bearer {gateway.token}"}
    try:
        async with (
            httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as http,
            subscribe(http, f"/subscribe/{tag}c") as stream,
        ):
            await stream.next()
            assert gateway.process.proc is not None
            gateway.process.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(stream.rest(), timeout=5) == [
                "event: error",
                "data: ERR the gateway is shutting down",
            ]
        # Exited by itself (uvicorn re-raises the signal once it has shut down cleanly).
        assert await asyncio.to_thread(gateway.process.proc.wait, 5) == -signal.SIGTERM
    finally:
        gateway.process.stop()
        node.stop()


@pytest.mark.cluster
async def test_cluster_subscribers_get_messages_published_on_any_node(
    cluster_gateway: Gateway, redis_cluster: RedisCluster, tag: str
) -> None:
    headers = {"Authorization": f"Bearer {cluster_gateway.token}"}
    async with (
        httpx.AsyncClient(base_url=cluster_gateway.url, headers=headers, timeout=10) as http,
        subscribe(http, f"/subscribe/{tag}news") as stream,
        subscribe(http, f"/psubscribe/{tag}*") as patterns,
    ):
        assert await stream.next() == f"data: subscribe,{tag}news,1"
        assert await patterns.next() == f"data: psubscribe,{tag}*,1"
        for node in redis_cluster.nodes:  # classic pub/sub is broadcast to every node
            with redis_py.Redis(port=node.port) as client:
                client.publish(f"{tag}news", f"from {node.port}")
        for node in redis_cluster.nodes:
            assert await stream.next() == f"data: message,{tag}news,from {node.port}"
            assert await patterns.next() == f"data: pmessage,{tag}*,{tag}news,from {node.port}"
        publish_through_gateway(cluster_gateway, f"{tag}news", "via the gateway")
        assert await stream.next() == f"data: message,{tag}news,via the gateway"


async def test_a_read_only_token_subscribes_and_a_stream_outlives_the_request_timeout(node: Process, tag: str) -> None:
    """Subscribing reads, so the read-only token may; --request-timeout bounds requests, not streams."""
    gateway = start_gateway(
        f"redis://127.0.0.1:{node.port}",
        *("--readonly-token", "ro", "--request-timeout", "0.3", "--max-block", "0.1", "--sse-heartbeat", "0.05"),
    )
    headers = {"Authorization": "Bearer ro"}
    try:
        async with (
            httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=10) as http,
            subscribe(http, f"/subscribe/{tag}c") as stream,
        ):
            assert await stream.next() == f"data: subscribe,{tag}c,1"
            await stream.pings_until(20)  # each after 0.05 s of silence: the stream is 1 s old, past 0.3 s
            publish = await http.post("/", json=["PUBLISH", f"{tag}c", "m"])
            assert publish.status_code == 403  # the read-only token reads, never publishes
            publish_through_gateway(gateway, f"{tag}c", "still open")
            assert await stream.next() == f"data: message,{tag}c,still open"
    finally:
        gateway.process.stop()


async def test_bad_subscriptions_get_json_errors(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await http.post("/subscribe/c")).json() == {"error": "Unauthorized"}
        headers = {"Authorization": f"Bearer {gateway.token}"}
        empty = await http.post("/subscribe", headers=headers)
        assert empty.status_code == 400
        assert "at least one channel" in empty.json()["error"]
        assert (await http.put("/psubscribe/p*", headers=headers)).status_code == 405
        over_rest = await http.post("/", json=["SUBSCRIBE", "c"], headers=headers)
        assert over_rest.status_code == 400
        assert "/subscribe/<channel>" in over_rest.json()["error"]
    assert gateway.stats()["subscriptions"]["open"] == 0


async def test_the_javascript_sdk_subscribes_receives_and_unsubscribes(
    gateway: Gateway, node: Process, tag: str
) -> None:
    node_binary = shutil.which("node")
    assert node_binary is not None, "node is missing: run `make setup`"
    script = ROOT / "tests" / "emulators" / "js" / "subscribe.mjs"
    result = await asyncio.to_thread(
        subprocess.run,
        [node_binary, str(script), gateway.url, gateway.token, tag],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["errors"] == []
    assert seen["subscribe"] == [1]
    assert seen["psubscribe"] == [1]
    assert seen["receivers"] == [1, 1, 1]
    assert seen["message"] == [
        {"channel": f"{tag}news", "message": "hello, world"},
        {"channel": f"{tag}news", "message": {"kind": "json", "items": [1, 2], "text": "a,b"}},
    ]
    assert seen["pmessage"] == [
        {"pattern": f"{tag}room:*", "channel": f"{tag}room:7", "message": {"user": "ann", "says": "hi, all"}}
    ]
    await wait_for_open_subscriptions(gateway, 0)
    assert redis_numsub(node, f"{tag}news") == {f"{tag}news": 0}
    assert redis_numpat(node) == 0
