"""Benchmark: FencedLock, fenced writes and Redlock, each against a baseline measured in the same run.

    .venv/bin/python bench/locks.py

Starts its own three redis-servers, each behind its own gateway, on free loopback ports. Counts REST
round trips at the gateway (`GET /__stats`). Baselines: the classic lock recipe with no token (`SET NX
PX`, then a compare-and-delete script), waiting with the same jittered backoff; a plain `SET`; the
lock on one endpoint. Targets (issue #9): 2 round trips per uncontended acquire + release, 1 per fenced
write; Redlock on 3 endpoints at most 1.5x the latency of 1 (the endpoints are asked in parallel).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_client import machine
from shared.config import RedisSettings
from shared.locks.fencing import fenced_set
from shared.locks.lock import RETRY_BASE_MS, RETRY_CAP_MS, FencedLock
from shared.redis import RedisClient, RedisClients, RedisPipeline
from shared.scripts import Script
from tests.servers import Process, free_port, python_module, redis_server

TOKEN = "bench-token"
ROUNDS = 5
CYCLES = 200  # calls per measurement per round
CONTENDERS = 20
CONTENDED_S = 3.0
LEASE_MS = 10_000
RTTS_MS = (2, 5)  # Upstash from a function in the same region: a few ms (simulated: DelayedClient)

COMPARE_AND_DELETE = Script(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class DelayedClient:
    """An endpoint one network round trip away: waits `rtt_s` (idle, as on a network) before each call.
    On loopback a call costs the client CPU (about 0.2 ms, bench/redis_client.py) that one Python thread
    cannot overlap, and three gateways and three Redis servers share the machine's cores with it, so the
    parallel Redlock shows its real shape only once the wait is the network's."""

    def __init__(self, inner: RedisClients, rtt_s: float) -> None:
        self.inner, self.rtt_s = inner, rtt_s

    async def execute(self, command: list[Any]) -> Any:
        await asyncio.sleep(self.rtt_s)
        return await self.inner.get().execute(command)

    def pipeline(self) -> RedisPipeline:
        return self.inner.get().pipeline()


class ClassicLock:
    """The recipe most Redis lock libraries implement: no fencing token."""

    def __init__(self, clients: RedisClients, name: str) -> None:
        self.clients, self.key = clients, f"classic:{{{name}}}"

    async def acquire(self, wait_ms: int) -> str | None:
        started, attempt = time.monotonic(), 0
        while True:
            owner = uuid.uuid4().hex
            if await self.clients.get().execute(["SET", self.key, owner, "NX", "PX", LEASE_MS]):
                return owner
            left_s = wait_ms / 1000 - (time.monotonic() - started)
            if left_s <= 0:
                return None
            ceiling = min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** min(attempt, 16))
            await asyncio.sleep(min(left_s, (ceiling / 2 + random.random() * ceiling / 2) / 1000))
            attempt += 1

    async def release(self, owner: str) -> None:
        await COMPARE_AND_DELETE.run(self.clients.get(), [self.key], [owner])


def gateway_requests(port: int) -> int:
    stats = httpx.get(f"http://127.0.0.1:{port}/__stats", headers={"Authorization": f"Bearer {TOKEN}"})
    total: int = stats.json()["total"]["requests"]
    return total


async def timed(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def cycle(lock: FencedLock) -> None:
    lease = await lock.acquire()
    assert lease is not None
    await lock.release(lease)


async def classic_cycle(lock: ClassicLock) -> None:
    owner = await lock.acquire(0)
    assert owner is not None
    await lock.release(owner)


async def round_trips(clients: RedisClients, port: int) -> tuple[float, float]:
    lock = FencedLock("bench-rt", LEASE_MS, redis=clients.get)
    await cycle(lock)  # load the scripts
    before = gateway_requests(port)
    for _ in range(200):
        await cycle(lock)
    per_cycle = (gateway_requests(port) - before) / 200
    lease = await lock.acquire()
    assert lease is not None
    await fenced_set(lock.key("r"), lease.token, "warm", issuer=lock)
    before = gateway_requests(port)
    for i in range(200):
        await fenced_set(lock.key("r"), lease.token, i, issuer=lock)
    return per_cycle, (gateway_requests(port) - before) / 200


Release = Callable[[], Awaitable[object]]


async def contended(acquire: Callable[[], Awaitable[Release]]) -> float:
    """Acquires per second: CONTENDERS tasks each acquiring, doing nothing, releasing, for CONTENDED_S."""
    grants = 0
    deadline = time.monotonic() + CONTENDED_S

    async def contender() -> None:
        nonlocal grants
        while time.monotonic() < deadline:
            release = await acquire()
            grants += 1
            await release()

    started = time.monotonic()
    await asyncio.gather(*(contender() for _ in range(CONTENDERS)))
    return grants / (time.monotonic() - started)


async def contention(clients: RedisClients) -> tuple[float, float]:
    ours, classic = FencedLock("bench-hot", LEASE_MS, redis=clients.get), ClassicLock(clients, "bench-hot")

    async def ours_acquire() -> Release:
        lease = await ours.acquire(wait_ms=60_000)
        assert lease is not None
        return lambda: ours.release(lease)

    async def classic_acquire() -> Release:
        owner = await classic.acquire(wait_ms=60_000)
        assert owner is not None
        return lambda: classic.release(owner)

    rates: dict[str, list[float]] = {"ours": [], "classic": []}
    for _ in range(3):  # alternate, keep each side's median: background load moves both alike
        rates["ours"].append(await contended(ours_acquire))
        rates["classic"].append(await contended(classic_acquire))
    return statistics.median(rates["ours"]), statistics.median(rates["classic"])


async def latencies(endpoints: list[RedisClients]) -> dict[str, list[float]]:
    """Sequential calls by one caller, alternated over rounds so background load moves them alike."""
    one = FencedLock("bench-lat-1", LEASE_MS, redis=endpoints[0].get)
    three = FencedLock("bench-lat-3", LEASE_MS, endpoints=[e.get for e in endpoints])
    classic = ClassicLock(endpoints[0], "bench-lat")
    writer = FencedLock("bench-write", LEASE_MS, redis=endpoints[0].get)
    lease = await writer.acquire()
    assert lease is not None
    key = writer.key("w")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "classic lock (SET NX PX + compare-and-delete), 1 endpoint": lambda: classic_cycle(classic),
        "FencedLock, 1 endpoint": lambda: cycle(one),
        "FencedLock, Redlock on 3 endpoints": lambda: cycle(three),
        "SET": lambda: endpoints[0].get().execute(["SET", key, "v"]),
        "fenced_set": lambda: fenced_set(key, lease.token, "v", issuer=writer),
    }
    for rtt_ms in RTTS_MS:
        far = [provider(DelayedClient(e, rtt_ms / 1000)) for e in endpoints]
        one_far = FencedLock(f"bench-far-{rtt_ms}-1", LEASE_MS, redis=far[0])
        three_far = FencedLock(f"bench-far-{rtt_ms}-3", LEASE_MS, endpoints=far)
        calls[f"FencedLock, 1 endpoint, {rtt_ms} ms RTT"] = partial(cycle, one_far)
        calls[f"FencedLock, Redlock on 3 endpoints, {rtt_ms} ms RTT"] = partial(cycle, three_far)
    results: dict[str, list[float]] = {label: [] for label in calls}
    for call in calls.values():
        await timed(call, 20)  # warm: scripts loaded, connections open
    for _ in range(ROUNDS):
        for label, call in calls.items():
            results[label] += await timed(call, CYCLES)
    return results


def provider(client: RedisClient) -> Callable[[], RedisClient]:
    return lambda: client


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(ports: list[int]) -> None:
    endpoints = [RedisClients(RedisSettings(f"http://127.0.0.1:{port}", TOKEN), timeout_s=10) for port in ports]
    try:
        per_cycle, per_write = await round_trips(endpoints[0], ports[0])
        ours_rate, classic_rate = await contention(endpoints[0])
        lat = await latencies(endpoints)
    finally:
        for clients in endpoints:
            await clients.aclose()
    print(f"\nmachine: {machine()}\n")
    print(f"round trips per uncontended acquire + release: {per_cycle:.2f}; per fenced write: {per_write:.2f}")
    print(f"\n{'operation (sequential, one caller)':<58}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in lat.items():
        print(f"{label:<58}{pct(values, 0.5):>9.3f}{pct(values, 0.99):>9.3f}")
    print(
        f"\nacquires/s, {CONTENDERS} tasks contending for one lock (acquire, release; median of 3 runs of "
        f"{CONTENDED_S:.0f} s): FencedLock {ours_rate:,.0f}, classic lock {classic_rate:,.0f} "
        f"({ours_rate / classic_rate:.2f}x)"
    )
    ratios = {"loopback": redlock_ratio(lat, "")}
    ratios |= {f"{rtt} ms RTT": redlock_ratio(lat, f", {rtt} ms RTT") for rtt in RTTS_MS}
    print("\ntargets:")
    print(f"  2 round trips per acquire + release       {'met' if per_cycle == 2 else 'MISSED'}: {per_cycle:.2f}")
    print(f"  1 round trip per fenced write             {'met' if per_write == 1 else 'MISSED'}: {per_write:.2f}")
    print("  Redlock (3) at most 1.5x one endpoint     " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    print(
        "    (p50; the endpoints are asked in parallel, but each request costs the client CPU that one thread runs\n"
        "    in turn, and the 3 gateways and Redis servers share the cores: the ratio falls toward 1x as the\n"
        "    network's share of a call grows)"
    )


def redlock_ratio(lat: dict[str, list[float]], suffix: str) -> float:
    three = pct(lat[f"FencedLock, Redlock on 3 endpoints{suffix}"], 0.5)
    return three / pct(lat[f"FencedLock, 1 endpoint{suffix}"], 0.5)


def main() -> None:
    processes: list[Process] = []
    try:
        ports = []
        for _ in range(3):
            node = redis_server().start()
            processes.append(node)
            port = free_port()
            redis_url = f"redis://127.0.0.1:{node.port}"
            processes.append(
                python_module("emulators.redis_rest", port, "--redis-url", redis_url, "--token", TOKEN).start()
            )
            ports.append(port)
        asyncio.run(measure(ports))
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
