"""Benchmark: the Upstash-REST gateway with one and with two workers, against redis-py talking straight
to the same Redis, in one run.

    .venv/bin/python bench/gateway.py [--requests N] [--workers 1 2]

Starts its own redis-server and, for each worker count, a gateway on free loopback ports. The HTTP side
is driven by a minimal keep-alive HTTP/1.1 client (raw asyncio streams on uvloop), so the figures are
the gateway's, not an HTTP library's; the baseline is redis-py's asyncio client on the same Redis,
measured right after each gateway measurement. The CPU each process spends per request (this load
generator, the gateway's processes, redis-server; from /proc) is printed too: on a small machine they
share the cores. Targets (issue #16): at least 0.8x redis-py's throughput at 64 concurrent callers with
one worker, 1.6x with two; added p50 under 0.2 ms at concurrency 1; (issue #2) a 100-command pipeline
costing at most 3x one command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_client import HttpConnection, machine
from bench.ratelimit import cpu_seconds
from tests.servers import Process, free_port, python_module, redis_server

TOKEN = "bench-token"


@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request, by process

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def send_ok(connection: HttpConnection, raw: bytes) -> bytes:
    status, body = await connection.send(raw)
    if status != 200:
        raise RuntimeError(f"gateway answered {status}: {body[:200]!r}")
    return body


def post(connection: HttpConnection, path: str, body: bytes) -> bytes:
    return connection.request(path, body, {"Authorization": f"Bearer {TOKEN}", "Upstash-Encoding": "base64"})


async def drive(label: str, workers: Sequence[Callable[[], Awaitable[object]]], total: int) -> Result:
    """Run `total` calls spread over the workers (one per connection), each timed."""
    latencies: list[float] = []
    per_worker = total // len(workers)

    async def loop(call: Callable[[], Awaitable[object]]) -> None:
        for _ in range(per_worker):
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    begin = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in workers))
    return Result(label, per_worker * len(workers), time.perf_counter() - begin, latencies)


class CpuMeter:
    """CPU per request of the load generator (this process), the gateway (all its processes), Redis."""

    def __init__(self, gateway: Process | None, redis_pid: int) -> None:
        gateway_pids = [] if gateway is None or gateway.proc is None else [gateway.proc.pid, *children(gateway)]
        self.pids: dict[str, list[int | None]] = {"load": [None], "gateway": list(gateway_pids), "redis": [redis_pid]}

    def read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    async def drive(self, label: str, callers: Sequence[Callable[[], Awaitable[object]]], total: int) -> Result:
        before = self.read()
        result = await drive(label, callers, total)
        after = self.read()
        result.cpu_ms = {name: (after[name] - before[name]) * 1000 / result.requests for name in after}
        return result


def children(process: Process) -> list[int]:
    assert process.proc is not None
    pid = process.proc.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_serving(port: int, workers: int) -> None:
    """A multi-worker gateway opens its port with its first worker: wait for all of them."""
    deadline = time.monotonic() + 15
    while True:
        stats = httpx.get(f"http://127.0.0.1:{port}/__stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        if stats.get("workers", {}).get("serving", 1) >= workers:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway's workers did not all start")
        time.sleep(0.05)


async def measure(
    gateway: Process, gateway_port: int, redis_port: int, redis_pid: int, requests: int
) -> list[tuple[Result, Result]]:
    direct = aioredis.Redis(port=redis_port, max_connections=64)
    await direct.set("bench:key", "x" * 100)
    on_gateway, on_redis = CpuMeter(gateway, redis_pid), CpuMeter(None, redis_pid)
    pairs: list[tuple[Result, Result]] = []
    for concurrency in (1, 64):
        connections = [await HttpConnection.open(gateway_port) for _ in range(concurrency)]
        for op in ("GET", "SET"):
            args = ["GET", "bench:key"] if op == "GET" else ["SET", "bench:key", "x" * 100]
            raw_by_conn = [post(c, "/", json.dumps(args).encode()) for c in connections]
            http_callers = [partial(send_ok, c, raw) for c, raw in zip(connections, raw_by_conn, strict=True)]
            redis_callers = [partial(direct.execute_command, *args)] * concurrency
            await drive("warm-up", http_callers, min(requests, 500))
            result = await on_gateway.drive(f"gateway  {op} c={concurrency}", http_callers, requests)
            baseline = await on_redis.drive(f"redis-py {op} c={concurrency}", redis_callers, requests)
            pairs.append((result, baseline))
        for c in connections:
            c.close()
    await direct.aclose()
    return pairs


async def pipeline_cost(gateway_port: int, requests: int) -> tuple[float, float]:
    """p50 of one command and of a 100-command pipeline, interleaved so both see the same machine state."""
    connection = await HttpConnection.open(gateway_port)
    single = post(connection, "/", json.dumps(["GET", "bench:key"]).encode())
    hundred = post(connection, "/pipeline", json.dumps([["GET", "bench:key"]] * 100).encode())
    one_ms: list[float] = []
    many_ms: list[float] = []
    for i in range(requests // 2 + 200):
        for raw, sink in ((single, one_ms), (hundred, many_ms)):
            start = time.perf_counter()
            await send_ok(connection, raw)
            if i >= 200:  # warm-up
                sink.append((time.perf_counter() - start) * 1000)
    connection.close()
    return statistics.median(one_ms), statistics.median(many_ms)


def run_gateway(
    workers: int, redis_port: int, redis_pid: int, requests: int
) -> tuple[list[tuple[Result, Result]], tuple[float, float] | None]:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}"
    gateway = python_module(
        "emulators.redis_rest", port, "--redis-url", redis_url, "--token", TOKEN, "--workers", str(workers)
    ).start()
    try:
        wait_serving(port, workers)
        pairs = uvloop.run(measure(gateway, port, redis_port, redis_pid, requests))
        pipeline = uvloop.run(pipeline_cost(port, requests)) if workers == 1 else None
    finally:
        gateway.stop()
    return pairs, pipeline


def print_table(workers: int, pairs: list[tuple[Result, Result]]) -> None:
    print(f"\n{workers} gateway worker{'s' if workers > 1 else ''}")
    print(
        f"{'measurement':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'redis-py req/s':>16}{'ratio':>7}"
        f"{'added p50 ms':>14}  CPU us/request: load gen, gateway, redis (redis-py: load gen, redis)"
    )
    for g, b in pairs:
        added = g.pct(0.5) - b.pct(0.5)
        cpu = ", ".join(f"{g.cpu_ms[n] * 1000:.0f}" for n in ("load", "gateway", "redis"))
        base_cpu = ", ".join(f"{b.cpu_ms[n] * 1000:.0f}" for n in ("load", "redis"))
        print(
            f"{g.label:<24}{g.rate:>10,.0f}{g.pct(0.5):>9.3f}{g.pct(0.99):>9.3f}{b.rate:>16,.0f}{g.rate / b.rate:>7.2f}"
            f"{added:>14.3f}  {cpu} ({base_cpu})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6400, help="calls per measurement (default: 6400)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    args = parser.parse_args()
    node = redis_server().start()
    assert node.proc is not None
    results: dict[int, list[tuple[Result, Result]]] = {}
    pipeline: tuple[float, float] | None = None
    try:
        for workers in args.workers:
            results[workers], cost = run_gateway(workers, node.port, node.proc.pid, args.requests)
            pipeline = pipeline or cost
    finally:
        node.stop()

    print(f"\nmachine: {machine()}")
    for workers, pairs in results.items():
        print_table(workers, pairs)
    print("\ntargets:")
    for workers, pairs in results.items():
        target = 0.8 * workers
        ratios = [g.rate / b.rate for g, b in pairs if "c=64" in g.label]
        worst = min(ratios)
        verdict = "met" if worst >= target else "MISSED"
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  {workers} worker(s), c=64 vs redis-py  GET, SET {shown}x   >= {target:.1f}x   {verdict}")
        added = max(g.pct(0.5) - b.pct(0.5) for g, b in pairs if "c=1" in g.label)
        print(
            f"  {workers} worker(s), added p50 (c=1)    {added:.3f} ms      < 0.2 ms  "
            f"{'met' if added < 0.2 else 'MISSED'}"
        )
    if pipeline is not None:
        one_ms, hundred_ms = pipeline
        ratio = hundred_ms / one_ms
        print(
            f"  100-command pipeline (1 worker)   {ratio:.2f}x one ({hundred_ms:.3f} vs {one_ms:.3f} ms p50)"
            f"   <= 3x     {'met' if ratio <= 3 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
