"""shared/cache against the real gateway and Redis (single node and Cluster).

Freshness follows a ManualClock the test moves (passed to the scripts as `now`), and XFetch's draw is a
fixed number, so nothing here depends on how fast the machine is except the in-flight recomputes, which
wait on events the test sets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import keys
from shared.cache.store import Cache, Computed
from shared.clock import ManualClock
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients

START_MS = 1_800_000_000_000


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=20) as clients:
        yield clients


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


def new_cache(redis: RedisClients, clock: ManualClock, **kwargs: Any) -> Cache:
    return Cache(f"t{uuid.uuid4().hex[:10]}", redis=redis.get, clock=clock, random=lambda: 0.5, **kwargs)


class Origin:
    """A compute function that counts its calls and answers `value`, optionally after `gate` opens."""

    def __init__(self, value: object = "v1") -> None:
        self.value = value
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


async def test_fresh_hit_is_one_round_trip_and_a_miss_two(
    redis: RedisClients, clock: ManualClock, any_gateway: Gateway
) -> None:
    cache, origin = new_cache(redis, clock), Origin()
    await cache.get_or_compute("k", Origin(), ttl_s=60)  # the key's node learns the scripts (NOSCRIPT once)
    await cache.delete("k")
    before = any_gateway.requests()
    assert (await cache.fetch("k", origin, ttl_s=60)).state == "miss"
    middle = any_gateway.requests()
    hit = await cache.fetch("k", origin, ttl_s=60, tags=("a", "b"))
    assert (hit.state, hit.value, origin.calls) == ("hit", "v1", 1)
    assert middle - before == 2
    assert any_gateway.requests() - middle == 1


async def test_stampede_on_a_stale_key_recomputes_once_and_answers_everyone(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache, origin = new_cache(redis, clock), Origin("old")
    await cache.get_or_compute("hot", origin, ttl_s=10, stale_ttl_s=60)
    clock.advance(11)
    origin.value, origin.gate = "new", asyncio.Event()
    readers = [asyncio.create_task(cache.fetch("hot", origin, ttl_s=10, stale_ttl_s=60)) for _ in range(200)]
    await asyncio.wait_for(origin.entered.wait(), 20)
    origin.gate.set()
    results = await asyncio.gather(*readers)
    assert origin.calls == 2  # the first fill, then exactly one refresh
    assert sorted({r.value for r in results}) == ["new", "old"]
    assert sum(r.state == "miss" for r in results) == 1  # the lease winner, who paid the recompute
    assert (await cache.fetch("hot", origin, ttl_s=10)).value == "new"


async def test_cold_miss_waiters_take_the_winners_value(redis: RedisClients, clock: ManualClock) -> None:
    cache, origin = new_cache(redis, clock, wait_s=30), Origin()
    origin.gate = asyncio.Event()
    readers = [asyncio.create_task(cache.get_or_compute("cold", origin, ttl_s=60)) for _ in range(50)]
    await asyncio.wait_for(origin.entered.wait(), 20)
    origin.gate.set()
    assert await asyncio.gather(*readers) == ["v1"] * 50
    assert origin.calls == 1


async def test_waiters_compute_themselves_when_the_winner_never_answers(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache, origin = new_cache(redis, clock, wait_s=0.2), Origin()
    origin.gate = asyncio.Event()
    stuck = asyncio.create_task(cache.get_or_compute("k", origin, ttl_s=60))
    await asyncio.wait_for(origin.entered.wait(), 20)
    second = Origin("v2")
    assert await cache.get_or_compute("k", second, ttl_s=60) == "v2"
    origin.gate.set()
    await stuck


async def test_delete_during_a_slow_recompute_never_lets_the_old_value_back(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache, origin = new_cache(redis, clock), Origin("old")
    origin.gate = asyncio.Event()
    slow = asyncio.create_task(cache.get_or_compute("k", origin, ttl_s=60))
    await asyncio.wait_for(origin.entered.wait(), 20)
    await cache.delete("k")
    origin.gate.set()
    assert await slow == "old"  # its own caller gets what it computed, but it is not stored
    assert await cache.get_or_compute("k", Origin("new"), ttl_s=60) == "new"


async def test_tag_invalidation_during_a_slow_recompute_never_lets_the_old_value_back(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache, origin = new_cache(redis, clock), Origin("old")
    origin.gate = asyncio.Event()
    slow = asyncio.create_task(cache.get_or_compute("k", origin, ttl_s=60, tags=("t",)))
    await asyncio.wait_for(origin.entered.wait(), 20)
    await cache.invalidate(tags=("t",))
    origin.gate.set()
    await slow
    clock.advance(0.001)
    assert await cache.get_or_compute("k", Origin("new"), ttl_s=60, tags=("t",)) == "new"


async def test_one_tag_invalidation_is_one_round_trip_for_any_number_of_keys(
    redis: RedisClients, clock: ManualClock, any_gateway: Gateway
) -> None:
    cache = new_cache(redis, clock)
    await cache.invalidate(tags=("group",))  # the tag's node learns the script (NOSCRIPT once)
    for i in range(20):
        await cache.get_or_compute(f"k{i}", Origin(f"old{i}"), ttl_s=60, tags=("group",))
    clock.advance(1)
    before = any_gateway.requests()
    assert await cache.invalidate(tags=("group",)) == 1  # (its pending counters ride along)
    assert any_gateway.requests() - before == 1
    clock.advance(1)
    other = Cache(cache.namespace, redis=redis.get, clock=clock)  # another instance: knows no tags yet
    values = [await other.get_or_compute(f"k{i}", Origin(f"new{i}"), ttl_s=60) for i in range(20)]
    assert values == [f"new{i}" for i in range(20)]


async def test_write_through_set_wins_over_an_earlier_recompute(redis: RedisClients, clock: ManualClock) -> None:
    cache, origin = new_cache(redis, clock), Origin("computed-before")
    origin.gate = asyncio.Event()
    slow = asyncio.create_task(cache.get_or_compute("k", origin, ttl_s=60))
    await asyncio.wait_for(origin.entered.wait(), 20)
    await cache.set("k", "written", ttl_s=60)
    origin.gate.set()
    await slow
    assert await cache.get_or_compute("k", Origin("x"), ttl_s=60) == "written"


async def test_stale_if_error_serves_the_old_value_when_the_recompute_fails(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache = new_cache(redis, clock)
    await cache.fetch("k", Origin("old"), ttl_s=10, stale_if_error_s=100)
    clock.advance(50)
    result = await cache.fetch("k", Origin(RuntimeError("origin down")), ttl_s=10, stale_if_error_s=100)
    assert (result.value, result.state, result.refresh_failed) == ("old", "stale", True)
    clock.advance(100)
    with pytest.raises(RuntimeError):
        await cache.fetch("k", Origin(RuntimeError("origin down")), ttl_s=10, stale_if_error_s=100)


async def test_not_found_is_cached_for_the_negative_ttl(redis: RedisClients, clock: ManualClock) -> None:
    cache, origin = new_cache(redis, clock, negative_ttl_s=5), Origin(None)
    assert await cache.get_or_compute("gone", origin, ttl_s=600) is None
    assert await cache.get_or_compute("gone", origin, ttl_s=600) is None
    assert origin.calls == 1
    clock.advance(6)
    await cache.get_or_compute("gone", origin, ttl_s=600)
    assert origin.calls == 2


async def test_xfetch_refreshes_a_hot_key_before_it_expires(redis: RedisClients, clock: ManualClock) -> None:
    # u = 0.5: early once within delta * beta * ln 2 of expiry. delta (the recompute's own time) is at
    # least 20 ms, so with beta = 100 the window is at least 1.4 s; it would reach the 50 s left in the
    # checks of a fresh value only if one recompute took over 0.7 s.
    cache = new_cache(redis, clock)

    async def slow_compute() -> str:
        await asyncio.sleep(0.02)
        return "v"

    await cache.fetch("k", slow_compute, ttl_s=60, beta=100)
    clock.advance(10)
    assert (await cache.fetch("k", slow_compute, ttl_s=60, beta=100)).state == "hit"
    clock.advance(49.5)  # 0.5 s before expiry: still fresh, but within the window
    refreshed = await cache.fetch("k", slow_compute, ttl_s=60, beta=100)
    assert (refreshed.state, refreshed.age_s) == ("miss", 0.0)
    clock.advance(10)  # past the first expiry: the refreshed value is fresh, far from its own
    assert (await cache.fetch("k", slow_compute, ttl_s=60, beta=100)).state == "hit"


async def never_sleep(seconds: float) -> None:
    raise AssertionError(f"waited {seconds} s where nothing should wait")


async def test_another_format_version_reads_as_a_miss(redis: RedisClients, clock: ManualClock) -> None:
    cache = new_cache(redis, clock, sleep=never_sleep)  # recomputed at once, no waiting for a lease
    await cache.get_or_compute("k", Origin("mine"), ttl_s=60)
    entry = keys.cache_entry(cache.namespace, "k")
    await redis.get().execute(["HSET", entry, "p", '99|["from the future",[]]'])
    assert await cache.get_or_compute("k", Origin("recomputed"), ttl_s=60) == "recomputed"


async def test_computed_sets_its_own_lifetimes_and_values_over_the_cap_are_not_stored(
    redis: RedisClients, clock: ManualClock
) -> None:
    cache = new_cache(redis, clock, max_value_bytes=100)
    big = Origin("x" * 200)
    await cache.get_or_compute("big", big, ttl_s=60)
    await cache.get_or_compute("big", big, ttl_s=60)
    assert big.calls == 2
    short = Origin(Computed(value="s", ttl_s=1))
    await cache.get_or_compute("short", short, ttl_s=600)
    clock.advance(2)
    await cache.get_or_compute("short", short, ttl_s=600)
    assert short.calls == 2


async def test_every_key_written_has_a_ttl_and_stats_count(redis: RedisClients, clock: ManualClock) -> None:
    cache = new_cache(redis, clock)
    await cache.get_or_compute("a", Origin(), ttl_s=60, stale_ttl_s=30, tags=("t1",))
    await cache.get_or_compute("a", Origin(), ttl_s=60)
    await cache.set("b", 1, ttl_s=60)
    await cache.invalidate(keys=("a",), tags=("t1",))
    ns = cache.namespace
    written = [
        keys.cache_entry(ns, "b"),
        keys.cache_generation(ns, "a"),
        keys.cache_generation(ns, "b"),
        keys.cache_tag_stamp(ns, "t1"),
        keys.cache_stats(ns),
    ]
    stats = await cache.stats()
    assert {"hits": 1, "misses": 1, "invalidations": 2}.items() <= stats.items()
    for key in written:
        ttl = await redis.get().pttl(key)
        assert ttl > 0, key
    assert await redis.get().execute(["EXISTS", keys.cache_entry(ns, "a"), keys.cache_lease(ns, "a")]) == 0
