"""Benchmark: the Upstash-REST gateway against redis-py talking straight to the same Redis.

    .venv/bin/python bench/gateway.py [--requests N] [--seconds S]

Starts its own redis-server and one gateway worker on free loopback ports. The HTTP side is driven by
a minimal keep-alive HTTP/1.1 client (raw asyncio streams on uvloop), so the figures are the
gateway's, not an HTTP library's; the baseline is redis-py's asyncio client on the same Redis.
Targets (issue #2): under 1 ms added at p50, at least 3,000 single-command requests/s with one
worker, and a 100-command pipeline costing at most 3x one command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_client import HttpConnection, machine
from tests.servers import free_port, python_module, redis_server

TOKEN = "bench-token"


@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    latencies_ms: list[float]

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


async def measure(gateway_port: int, redis_port: int, requests: int) -> list[tuple[Result, Result]]:
    direct = aioredis.Redis(port=redis_port, max_connections=64)
    await direct.set("bench:key", "x" * 100)
    pairs: list[tuple[Result, Result]] = []
    for concurrency in (1, 64):
        connections = [await HttpConnection.open(gateway_port) for _ in range(concurrency)]
        for op in ("GET", "SET"):
            args = ["GET", "bench:key"] if op == "GET" else ["SET", "bench:key", "x" * 100]
            raw_by_conn = [post(c, "/", json.dumps(args).encode()) for c in connections]
            http_workers = [
                (lambda c=c, raw=raw: send_ok(c, raw)) for c, raw in zip(connections, raw_by_conn, strict=True)
            ]
            redis_workers = [(lambda args=args: direct.execute_command(*args))] * concurrency  # type: ignore[no-untyped-call]
            await drive("warm-up", http_workers, min(requests, 500))
            gateway = await drive(f"gateway  {op} c={concurrency}", http_workers, requests)
            baseline = await drive(f"redis-py {op} c={concurrency}", redis_workers, requests)
            pairs.append((gateway, baseline))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6400, help="calls per measurement (default: 6400)")
    args = parser.parse_args()
    node = redis_server().start()
    gateway_port = free_port()
    gateway = python_module(
        "emulators.redis_rest", gateway_port, "--redis-url", f"redis://127.0.0.1:{node.port}", "--token", TOKEN
    ).start()
    try:
        pairs = uvloop.run(measure(gateway_port, node.port, args.requests))
        one_ms, hundred_ms = uvloop.run(pipeline_cost(gateway_port, args.requests))
    finally:
        gateway.stop()
        node.stop()

    print(f"\nmachine: {machine()}; one gateway worker\n")
    print(f"{'measurement':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'baseline req/s':>16}{'added p50 ms':>14}")
    for gateway_result, baseline in pairs:
        added = gateway_result.pct(0.5) - baseline.pct(0.5)
        print(
            f"{gateway_result.label:<24}{gateway_result.rate:>10,.0f}{gateway_result.pct(0.5):>9.3f}"
            f"{gateway_result.pct(0.99):>9.3f}{baseline.rate:>16,.0f}{added:>14.3f}"
        )
    added_p50 = max(g.pct(0.5) - b.pct(0.5) for g, b in pairs if "c=1" in g.label)
    best_rate = max(g.rate for g, _ in pairs)
    ratio = hundred_ms / one_ms
    print(f"\npipeline: 1 command p50 {one_ms:.3f} ms, 100 commands p50 {hundred_ms:.3f} ms, ratio {ratio:.2f}x")
    print(
        "gateway/redis-py throughput at c=64: "
        + ", ".join(f"{g.label.split()[1]} {g.rate / b.rate:.2f}" for g, b in pairs if "c=64" in g.label)
    )
    print("\ntargets:")
    print(f"  added p50 latency (c=1)   {added_p50:.3f} ms   < 1 ms        {'met' if added_p50 < 1 else 'MISSED'}")
    print(f"  single-command req/s      {best_rate:,.0f}     >= 3,000      {'met' if best_rate >= 3000 else 'MISSED'}")
    print(f"  100-command pipeline      {ratio:.2f}x     <= 3x one     {'met' if ratio <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
