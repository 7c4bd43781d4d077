"""`--workers 2`: two gateway processes on one port. The round-trip counters of /__stats and the
metrics of /__metrics count every worker's requests whichever worker answers, a message reaches
subscribers on either worker, and the gateway stops cleanly, or exits 1 when a worker dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_py

from tests.conftest import Gateway, start_gateway
from tests.emulators.test_redis_rest_metrics import parse, value
from tests.emulators.test_redis_rest_subscribe import Stream
from tests.servers import Process, redis_server

WORKERS = 2


@pytest.fixture(scope="module")
def node() -> Iterator[Process]:
    process = redis_server().start()
    yield process
    process.stop()


def start_workers(node: Process) -> Gateway:
    """A two-worker gateway, returned once both workers serve (the port opens with the first)."""
    handle = start_gateway(f"redis://127.0.0.1:{node.port}", "--workers", str(WORKERS))
    deadline = time.monotonic() + 15
    while handle.stats()["workers"]["serving"] < WORKERS:
        assert time.monotonic() < deadline, "the workers did not all start"
        time.sleep(0.02)
    return handle


@pytest.fixture
def gateway(node: Process) -> Iterator[Gateway]:
    """A fresh gateway per test, so every count starts at zero."""
    handle = start_workers(node)
    yield handle
    handle.process.stop()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def headers(gateway: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.token}"}


async def test_counters_add_up_exactly_over_workers_and_connections(gateway: Gateway, node: Process, tag: str) -> None:
    async def caller(index: int) -> None:
        # A connection of its own per caller: the kernel spreads connections over the workers.
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers(gateway)) as client:
            for _ in range(5):
                assert (await client.post("/", json=["INCR", f"{tag}n"])).status_code == 200
            response = await client.post("/pipeline", json=[["INCR", f"{tag}n"], ["GET", f"{tag}n"]])
            assert response.status_code == 200
            assert (await client.get(f"/get/{tag}n")).status_code == 200

    callers = 40
    await asyncio.gather(*(caller(i) for i in range(callers)))

    stats = gateway.stats()
    assert stats["requests"] == {"command": 5 * callers, "pipeline": callers, "path": callers}
    assert stats["commands"] == {"command": 5 * callers, "pipeline": 2 * callers, "path": callers}
    assert stats["total"] == {"requests": 7 * callers, "commands": 8 * callers}
    served = stats["workers"]["requests"]
    assert len(served) == WORKERS and sum(served) == 7 * callers
    assert all(count > 0 for count in served), f"one worker served nothing: {served}"
    with redis_py.Redis(port=node.port) as direct:
        assert direct.get(f"{tag}n") == str(6 * callers).encode()

    # /__metrics answers the same totals from either worker: ask on fresh connections.
    for _ in range(6):
        async with httpx.AsyncClient(headers=headers(gateway)) as fresh:
            samples = parse((await fresh.get(f"{gateway.url}/__metrics")).text)
        assert value(samples, "requests_total", endpoint="command", status="200") == 5 * callers
        assert value(samples, "requests_total", endpoint="pipeline", status="200") == callers
        assert value(samples, "commands_total", command="INCR") == 6 * callers
        assert value(samples, "commands_total", command="GET") == 2 * callers
        assert value(samples, "request_duration_seconds_count", endpoint="path") == callers


async def test_a_message_reaches_subscribers_on_every_worker(gateway: Gateway, tag: str) -> None:
    channel = f"{tag}news"
    sse = {**headers(gateway), "Accept": "text/event-stream"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=gateway.url, headers=sse, limits=limits, timeout=10) as client:
        responses: list[httpx.Response] = []
        try:
            # Open streams until both workers hold one (each stream is a connection of its own).
            while min(gateway.stats()["workers"]["requests"]) == 0:
                assert len(responses) < 64, "every stream landed on one worker"
                request = client.build_request("POST", f"/subscribe/{channel}", content=b"[]")
                responses.append(await client.send(request, stream=True))
                assert responses[-1].status_code == 200
            streams = [Stream(response) for response in responses]
            for stream in streams:
                assert await stream.next() == f"data: subscribe,{channel},1"
            assert gateway.stats()["subscriptions"]["open"] == len(streams)
            # PUBLISH counts the Redis connections subscribed: one per worker (each has its own).
            async with httpx.AsyncClient(headers=headers(gateway)) as rest:
                published = await rest.post(gateway.url, json=["PUBLISH", channel, "to everyone"])
            assert published.json() == {"result": WORKERS}
            lines = await asyncio.gather(*(stream.next() for stream in streams))
            assert lines == [f"data: message,{channel},to everyone"] * len(streams)
        finally:
            for response in responses:
                await response.aclose()
    deadline = time.monotonic() + 10
    while gateway.stats()["subscriptions"]["open"] != 0:
        assert time.monotonic() < deadline, "closed streams are still counted"
        await asyncio.sleep(0.02)


def test_sigterm_stops_every_worker_and_frees_the_port(node: Process) -> None:
    gateway = start_workers(node)
    assert gateway.process.proc is not None
    parent = gateway.process.proc.pid
    workers = children(parent)
    assert len(workers) == WORKERS
    gateway.process.proc.send_signal(signal.SIGTERM)
    assert gateway.process.proc.wait(timeout=10) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nobody holds it any more


def test_a_worker_that_dies_stops_the_gateway_with_status_1(node: Process) -> None:
    gateway = start_workers(node)
    assert gateway.process.proc is not None
    first, second = children(gateway.process.proc.pid)
    os.kill(first, signal.SIGKILL)
    try:
        status = gateway.process.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.process.stop()
        raise
    assert status == 1
    assert not Path(f"/proc/{second}").exists()


def test_workers_must_be_at_least_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulators.redis_rest", "--token", "t", "--workers", "0"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--workers must be at least 1" in result.stderr
