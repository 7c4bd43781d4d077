"""Benchmark of the QStash emulator on loopback, against its targets and a baseline run beside it.

    .venv/bin/python bench/qstash.py [--publishes N] [--deliveries N] [--lateness-seconds S]

It starts its own emulator (`python -m emulators.qstash`, a subprocess) and a local destination (uvicorn
in a thread), then measures:

* publishes accepted per second (32 keep-alive connections of a minimal HTTP/1.1 client, so the load
  generator costs less than what it measures; each message is delayed an hour so delivery work does not
  mix in, and all are cancelled afterwards);
* deliveries per second to the destination from a queue of parallelism 1 and one of parallelism 50
  (messages are enqueued while the queue is paused, then it is resumed and the clock starts);
* delivery lateness after the due time at 100 messages/s (each with `Upstash-Delay: 1s`; the due time is
  the message's own `notBefore`, the arrival time is taken by the destination, same machine clock).

The baseline is direct POSTs from this process to the same destination with the HTTP client stack the
emulator delivers with (httpx, one AsyncClient per concurrent request, 50 at once): the ceiling any
delivery rate is compared with. Everything is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHASE_TIMEOUT_S = 120.0
TARGET_PUBLISHES_PER_S = 1000
TARGET_DELIVERIES_PER_S = 500
TARGET_P99_LATENESS_MS = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listened on port {port}")


@dataclass
class Destination:
    """Answers 200 to everything and notes when each request arrived, keyed by Upstash-Message-Id."""

    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        arrived = time.time()
        message_id = next((v.decode() for k, v in scope["headers"] if k == b"upstash-message-id"), "")
        with self._lock:
            self.count += 1
            if message_id:
                self.arrivals[message_id] = arrived
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def start(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            access_log=False,
            http="httptools",
            loop="uvloop",
        )
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        wait_for_port(self.port)
        return server

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class KeepAliveConnection:
    """A minimal HTTP/1.1 client on one keep-alive connection (Content-Length bodies only).

    httpx costs about 1 ms of CPU per request here, more than the emulator spends accepting a publish;
    measuring the emulator with it would measure httpx.
    """

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self._port = port
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: bytes = b"") -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._streams
        start = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n".encode()
        writer.write(start + self._head + headers + b"\r\n" + body)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await reader.readexactly(length)

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


async def run_workers(total: int, concurrency: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Run `one(worker, i)` for i < total on `concurrency` workers; the elapsed seconds."""
    counter = iter(range(total))

    async def worker(index: int) -> None:
        for i in counter:
            await one(index, i)

    started = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - started


async def poll_until(done: Callable[[], bool], interval_s: float = 0.002) -> None:
    """Wait for a condition the destination's thread makes true (an asyncio.Event cannot cross threads)."""
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        while True:
            if done():
                return
            await asyncio.sleep(interval_s)


async def wait_for_count(destination: Destination, expected: int) -> None:
    await poll_until(lambda: destination.count >= expected)


class Bench:
    def __init__(self, api: httpx.AsyncClient, emulator_port: int, destination: Destination) -> None:
        self.api = api
        self.emulator_port = emulator_port
        self.destination = destination

    async def baseline(self, total: int) -> float:
        clients = [httpx.AsyncClient(trust_env=False) for _ in range(50)]
        url = self.destination.url("/baseline")

        async def post(worker: int, _: int) -> None:
            (await clients[worker].post(url, content=b"x")).raise_for_status()

        try:
            return total / await run_workers(total, 50, post)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    async def publishes(self, total: int, concurrency: int = 32) -> float:
        path = "/v2/publish/" + self.destination.url("/publish")
        connections = [KeepAliveConnection(self.emulator_port, AUTH) for _ in range(concurrency)]
        extra = b"Upstash-Delay: 1h\r\nContent-Type: application/json\r\n"

        async def publish(worker: int, i: int) -> None:
            status, body = await connections[worker].request("POST", path, b'{"n": %d}' % i, extra)
            if status != 200:
                raise RuntimeError(f"publish answered {status}: {body!r}")

        try:
            rate = total / await run_workers(total, concurrency, publish)
        finally:
            for connection in connections:
                connection.close()
        (await self.api.delete("/v2/messages")).raise_for_status()  # cancel them all
        return rate

    async def deliveries(self, total: int, parallelism: int) -> float:
        queue = f"bench-p{parallelism}"
        response = await self.api.post(
            "/v2/queues", json={"queueName": queue, "parallelism": parallelism, "paused": True}
        )
        response.raise_for_status()
        entry = {"destination": self.destination.url(f"/q{parallelism}"), "queue": queue, "body": "x", "headers": {}}
        for start in range(0, total, 100):
            batch = [entry] * min(100, total - start)
            (await self.api.post("/v2/batch", json=batch)).raise_for_status()
        before = self.destination.count
        started = time.perf_counter()
        (await self.api.post(f"/v2/queues/{queue}/resume")).raise_for_status()
        await wait_for_count(self.destination, before + total)
        return total / (time.perf_counter() - started)

    async def lateness(self, seconds: float, per_second: int = 100) -> list[float]:
        """Publish `per_second` messages a second, each due 1 s later; lateness of each in ms."""
        url = "/v2/publish/" + self.destination.url("/late")
        ids: list[str] = []
        started = time.perf_counter()
        for i in range(int(seconds * per_second)):
            await asyncio.sleep(max(0.0, started + i / per_second - time.perf_counter()))
            response = await self.api.post(url, headers={"Upstash-Delay": "1s"}, content=b"late")
            response.raise_for_status()
            ids.append(response.json()["messageId"])
        await poll_until(lambda: all(i in self.destination.arrivals for i in ids), 0.01)
        due = await asyncio.gather(*(self._not_before_ms(i) for i in ids))
        return [self.destination.arrivals[i] * 1000 - d for i, d in zip(ids, due, strict=True)]

    async def _not_before_ms(self, message_id: str) -> float:
        response = await self.api.get(f"/v2/messages/{message_id}")
        response.raise_for_status()
        return float(response.json()["notBefore"])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(rows: list[tuple[str, str, str, str]]) -> None:
    print(f"\nQStash emulator benchmark: loopback, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print(f"{'metric':<54}{'value':>8}  {'target':<10}{'met'}")
    print("-" * 77)
    for metric, value, target, met in rows:
        print(f"{metric:<54}{value:>8}  {target:<10}{met}")


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


async def measure(args: argparse.Namespace, emulator_port: int, destination: Destination) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    base_url = f"http://127.0.0.1:{emulator_port}"
    async with httpx.AsyncClient(base_url=base_url, headers=AUTH, limits=limits, trust_env=False) as api:
        bench = Bench(api, emulator_port, destination)
        baseline = await bench.baseline(args.deliveries)
        publishes = await bench.publishes(args.publishes)
        serial = await bench.deliveries(args.deliveries // 2, parallelism=1)
        parallel = await bench.deliveries(args.deliveries, parallelism=50)
        late = await bench.lateness(args.lateness_seconds)
        stats = (await api.get("/__stats")).json()
    p50, p99 = statistics.median(late), percentile(late, 0.99)
    report(
        [
            ("baseline: direct POSTs/s, httpx, 50 clients", f"{baseline:,.0f}", "-", "-"),
            (
                "publishes accepted/s (32 connections)",
                f"{publishes:,.0f}",
                f">= {TARGET_PUBLISHES_PER_S:,}",
                verdict(publishes >= TARGET_PUBLISHES_PER_S),
            ),
            (
                f"deliveries/s, queue parallelism 1 ({serial / baseline:.2f}x base)",
                f"{serial:,.0f}",
                f">= {TARGET_DELIVERIES_PER_S}",
                verdict(serial >= TARGET_DELIVERIES_PER_S),
            ),
            (
                f"deliveries/s, queue parallelism 50 ({parallel / baseline:.2f}x base)",
                f"{parallel:,.0f}",
                f">= {TARGET_DELIVERIES_PER_S}",
                verdict(parallel >= TARGET_DELIVERIES_PER_S),
            ),
            ("lateness p50 at 100 msg/s (ms)", f"{p50:.1f}", "-", "-"),
            (
                "lateness p99 at 100 msg/s (ms)",
                f"{p99:.1f}",
                f"< {TARGET_P99_LATENESS_MS}",
                verdict(p99 < TARGET_P99_LATENESS_MS),
            ),
        ]
    )
    print(f"\n{len(late)} lateness samples, max {max(late):.1f} ms; emulator counters: {stats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--publishes", type=int, default=5000, help="publishes to time (default: %(default)s)")
    parser.add_argument("--deliveries", type=int, default=4000, help="deliveries at parallelism 50; half at 1")
    parser.add_argument("--lateness-seconds", type=float, default=5.0, help="seconds of 100 msg/s (default: 5)")
    args = parser.parse_args()
    destination = Destination()
    destination_server = destination.start()
    port = free_port()
    argv = [sys.executable, "-m", "emulators.qstash", "--port", str(port), "--token", TOKEN]
    emulator = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        asyncio.run(measure(args, port, destination))
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        destination_server.should_exit = True


if __name__ == "__main__":
    main()
