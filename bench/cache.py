"""Benchmark: shared/cache beside a naive cache-aside and a bare GET (same client), in the same run.

    .venv/bin/python bench/cache.py

Starts its own redis-server and gateway. Counts REST round trips from the gateway's /__stats. Targets
(issue #11): 1 round trip per fresh hit, at most 3 per miss; 1 origin call per expiry with 200
concurrent readers (the naive cache-aside beside it: its origin calls and p99); hit latency at most
1.2x a bare GET of the same value through the same client (the SDK on shared/http1.py).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvloop
from upstash_redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_client import machine
from shared.cache.store import Cache
from shared.config import RedisSettings
from shared.redis import RedisClients
from tests.servers import free_port, python_module, redis_server

TOKEN = "bench-token"
READERS = 200
ORIGIN_S = 0.05  # the origin's latency
HITS = 2000
ROUNDS = 5
VALUE = {"id": 42, "name": "x" * 900, "tags": list(range(20))}  # about 1 kB of JSON


class Origin:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        await asyncio.sleep(ORIGIN_S)
        return VALUE


def requests(port: int) -> int:
    stats = httpx.get(f"http://127.0.0.1:{port}/__stats", headers={"Authorization": f"Bearer {TOKEN}"})
    total: int = stats.json()["total"]["requests"]
    return total


def p99(latencies: list[float]) -> float:
    return sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def round_trips(cache: Cache, port: int) -> tuple[float, float]:
    await cache.get_or_compute("warm", Origin(), ttl_s=600)  # Redis learns the scripts
    before = requests(port)
    for i in range(100):
        await cache.get_or_compute(f"miss-{i}", Origin(), ttl_s=600)
    middle = requests(port)
    for i in range(100):
        await cache.get_or_compute(f"miss-{i}", Origin(), ttl_s=600)
    return (middle - before) / 100, (requests(port) - middle) / 100


async def stampede_ours(cache: Cache, key: str, stale: bool) -> tuple[int, float]:
    origin = Origin()
    await cache.get_or_compute(key, origin, ttl_s=0.5, stale_ttl_s=60 if stale else 0)
    await asyncio.sleep(0.6)
    origin.calls = 0
    readers = [timed(lambda: cache.get_or_compute(key, origin, ttl_s=600, stale_ttl_s=60)) for _ in range(READERS)]
    latencies = await asyncio.gather(*readers)
    return origin.calls, p99(latencies)


async def stampede_naive(redis: Redis, key: str) -> tuple[int, float]:
    origin = Origin()

    async def naive() -> object:
        cached: object = await redis.get(key)
        if cached is None:
            cached = await origin()
            await redis.set(key, "v", ex=600)
        return cached

    latencies = await asyncio.gather(*(timed(naive) for _ in range(READERS)))
    return origin.calls, p99(latencies)


async def hit_latency(cache: Cache, redis: Redis) -> tuple[float, float]:
    await cache.get_or_compute("hot", Origin(), ttl_s=3600)
    await redis.set("bare-hot", Cache.__name__ + str(VALUE))
    ours, bare = [], []
    for _ in range(ROUNDS):  # interleaved, so background load hits both alike
        ours.append(statistics.median([await timed(lambda: cache.get_or_compute("hot", Origin(), ttl_s=3600))
                                       for _ in range(HITS // ROUNDS)]))  # fmt: skip
        bare.append(statistics.median([await timed(lambda: redis.get("bare-hot")) for _ in range(HITS // ROUNDS)]))
    return statistics.median(ours) * 1000, statistics.median(bare) * 1000


async def run(port: int) -> None:
    clients = RedisClients(RedisSettings(f"http://127.0.0.1:{port}", TOKEN), timeout_s=30)
    redis = clients.get()  # the naive cache-aside and the bare GET use the library's client too
    try:
        cache = Cache("bench", redis=clients.get, wait_s=5)
        miss_rt, hit_rt = await round_trips(cache, port)
        print(f"round trips: fresh hit {hit_rt:.2f} (target 1), miss {miss_rt:.2f} (target <= 3)")
        calls, tail = await stampede_ours(cache, "stampede-stale", stale=True)
        print(f"{READERS} readers on an expired key with a stale copy: {calls} origin call(s), p99 {tail:.1f} ms")
        calls, tail = await stampede_ours(cache, "stampede-cold", stale=False)
        print(f"{READERS} readers on an expired key, no stale copy: {calls} origin call(s), p99 {tail:.1f} ms")
        calls, tail = await stampede_naive(redis, "naive-expired")
        print(f"naive cache-aside, {READERS} readers on an expired key: {calls} origin calls, p99 {tail:.1f} ms")
        ours, bare = await hit_latency(cache, redis)
        print(f"hit latency (median): ours {ours:.3f} ms, bare GET {bare:.3f} ms, ratio {ours / bare:.2f}x (<= 1.2)")
    finally:
        await clients.aclose()


def main() -> None:
    node = redis_server().start()
    port = free_port()
    redis_url = f"redis://127.0.0.1:{node.port}"
    gateway = python_module("emulators.redis_rest", port, "--redis-url", redis_url, "--token", TOKEN).start()
    try:
        print(f"\nmachine: {machine()}; origin latency {ORIGIN_S * 1000:.0f} ms\n")
        uvloop.run(run(port))
    finally:
        gateway.stop()
        node.stop()


if __name__ == "__main__":
    main()
