"""FencedLock and fenced writes against the real gateway and Redis, on a single node and on the Cluster.

Expiry is driven by a clock the test controls wherever it can be (the scripts decide with it), so the
few tests of Redis's own expiry use leases of half a second and sleep under a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from upstash_redis.errors import UpstashError

from shared import keys
from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.errors import LockNotAcquired, RedisUnavailable, StaleToken
from shared.locks.fencing import FencedScript, fenced_set
from shared.locks.lock import RETRY_CAP_MS, FencedLock
from shared.redis import RedisClients, RedisPipeline
from tests.conftest import Gateway, gateway_clients, start_gateway
from tests.servers import free_port, redis_server

START_MS = 1_800_000_000_000  # far from any real "now"
APPEND = FencedScript("return redis.call('RPUSH', KEYS[1], ARGV[1])")
# A body with a bug: its INCR of a list fails after the RPUSH (Redis does not roll back a script).
FAIL = FencedScript("redis.call('RPUSH', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[1])")


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=10) as clients:
        yield clients


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


async def get(redis: RedisClients, key: str) -> object:
    return await redis.get().execute(["GET", key])


async def test_fifty_contenders_never_overlap_and_tokens_grow_in_grant_order(redis: RedisClients, tag: str) -> None:
    lock = FencedLock(f"{tag}job", 10_000, redis=redis.get)
    counter = lock.key("counter")
    holders = 0
    grants: list[int] = []

    async def contender() -> None:
        nonlocal holders
        async with lock.hold(wait_ms=60_000) as lease:
            holders += 1
            assert holders == 1, "two holders at once"
            grants.append(lease.token)
            value = int(str(await get(redis, counter) or 0))
            await asyncio.sleep(0.001)  # the others poll while this one holds the lock
            await fenced_set(counter, lease.token, value + 1, issuer=lock)
            holders -= 1

    await asyncio.gather(*(contender() for _ in range(50)))
    assert len(grants) == 50
    assert grants == sorted(set(grants))  # strictly increasing
    assert await get(redis, counter) == "50"  # no increment lost, none refused


async def test_uncontended_acquire_and_release_take_two_round_trips_and_a_fenced_write_one(
    any_gateway: Gateway, redis: RedisClients, tag: str
) -> None:
    for i in range(32):  # EVALSHA misses once per Redis node: load the scripts on every node first
        warm = FencedLock(f"warm-locks-{i}", 1_000, redis=redis.get)
        lease = await warm.acquire()
        assert lease is not None
        await fenced_set(warm.key("r"), lease.token, "v", issuer=warm, ttl_ms=1_000)
        await warm.release(lease)
    lock = FencedLock(f"{tag}rt", 10_000, redis=redis.get)
    before = any_gateway.requests()
    for _ in range(5):
        lease = await lock.acquire()
        assert lease is not None
        assert await lock.release(lease)
    assert any_gateway.requests() - before == 10
    holder = await lock.acquire()
    assert holder is not None
    before = any_gateway.requests()
    for i in range(5):
        await fenced_set(lock.key("r"), holder.token, i, issuer=lock)
    assert any_gateway.requests() - before == 5


async def test_every_key_shares_the_locks_slot_and_has_a_ttl_except_the_counter(redis: RedisClients, tag: str) -> None:
    name = f"{tag}ttl"
    lock = FencedLock(name, 10_000, redis=redis.get)
    lease = await lock.acquire()
    assert lease is not None
    resource = lock.key("report")
    await fenced_set(resource, lease.token, "v", issuer=lock, ttl_ms=60_000)
    lease_key, counter_key, fence_key = (
        keys.lock_lease("lock", name),
        keys.lock_counter("lock", name),
        keys.fence(resource),
    )
    assert len({keys.hash_tag(k) for k in (lease_key, counter_key, resource, fence_key)}) == 1
    client = redis.get()
    assert 0 < await client.pttl(lease_key) <= 10_000
    assert await client.pttl(counter_key) == -1  # never expires, on purpose (keys.lock_counter)
    assert 0 < await client.pttl(resource) <= 60_000
    assert 6 * 86_400_000 < await client.pttl(fence_key) <= keys.FENCE_TTL_S * 1000
    assert keys.hash_tag(keys.fence("plain")) == "plain"
    assert keys.hash_tag(keys.fence("a{b}c")) == "b"
    with pytest.raises(ValueError, match="cannot fence"):
        keys.fence("a}b")


async def test_lock_not_acquired_when_held(redis: RedisClients, tag: str) -> None:
    lock = FencedLock(f"{tag}held", 10_000, redis=redis.get)
    assert await lock.acquire() is not None
    assert await lock.acquire() is None
    with pytest.raises(LockNotAcquired) as refused:
        async with lock.hold():
            pytest.fail("the block must not run")
    assert (refused.value.name, refused.value.wait_ms, refused.value.status) == (f"{tag}held", 0, 409)


async def test_paused_holder_is_refused_once_the_next_holder_is_granted(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    lock = FencedLock(f"{tag}paused", 60_000, redis=redis.get, clock=clock)
    resource = lock.key("report")
    a = await lock.acquire()
    assert a is not None
    await fenced_set(resource, a.token, "a1", issuer=lock)
    clock.advance(61)  # A "sleeps" past its lease: a GC pause, a frozen Lambda
    b = await lock.acquire()
    assert b is not None and b.token > a.token
    assert not await lock.holds(a)
    with pytest.raises(StaleToken) as stale:  # refused before B has written anything
        await fenced_set(resource, a.token, "a2", issuer=lock)
    assert (stale.value.token, stale.value.newest, stale.value.resource) == (a.token, b.token, resource)
    await fenced_set(resource, b.token, "b1", issuer=lock)
    assert await get(redis, resource) == "b1"


async def test_without_the_issuer_a_stale_write_is_refused_once_a_newer_token_has_written(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    lock = FencedLock(f"{tag}plain", 60_000, redis=redis.get, clock=clock)
    resource = f"{tag}report"  # any key: the fence record goes in its slot
    a = await lock.acquire()
    clock.advance(61)
    b = await lock.acquire()
    assert a is not None and b is not None
    await fenced_set(resource, b.token, "b1", ttl_ms=60_000, redis=redis.get)
    with pytest.raises(StaleToken) as stale:
        await fenced_set(resource, a.token, "a1", redis=redis.get)
    assert (stale.value.token, stale.value.newest) == (a.token, b.token)
    await fenced_set(resource, b.token, "b2", redis=redis.get)  # the same token may write again
    assert await get(redis, resource) == "b2"


async def test_paused_holder_with_a_real_lease_that_redis_expires(redis: RedisClients, tag: str) -> None:
    lock = FencedLock(f"{tag}real", 500, redis=redis.get)
    a = await lock.acquire()
    assert a is not None and 0 < a.remaining_ms() <= 500
    await asyncio.sleep(0.9)  # well past the lease
    assert a.remaining_ms() == 0
    assert not await lock.holds(a)
    b = await lock.acquire()
    assert b is not None and b.token > a.token
    with pytest.raises(StaleToken):
        await fenced_set(lock.key("r"), a.token, "a", issuer=lock)
    await fenced_set(lock.key("r"), b.token, "b", issuer=lock)


async def test_release_by_a_non_owner_changes_nothing(redis: RedisClients, tag: str) -> None:
    lock = FencedLock(f"{tag}owner", 10_000, redis=redis.get)
    a = await lock.acquire()
    assert a is not None
    forged = replace(a, owner="someone-else", token=a.token + 1_000)
    assert not await lock.release(forged)
    assert not await lock.holds(forged)
    assert await lock.acquire() is None  # still A's
    assert await lock.holds(a)
    assert await lock.release(a)
    b = await lock.acquire()
    assert b is not None and b.token == a.token + 1  # the forged release did not touch the counter


async def test_extend_moves_the_expiry_and_fails_after_it(redis: RedisClients, clock: ManualClock, tag: str) -> None:
    lock = FencedLock(f"{tag}extend", 60_000, redis=redis.get, clock=clock)
    a = await lock.acquire()
    assert a is not None and a.expires_at == START_MS + 60_000
    clock.advance(30)
    extended = await lock.extend(a)
    assert extended is not None
    assert (extended.token, extended.owner, extended.expires_at) == (a.token, a.owner, START_MS + 90_000)
    clock.advance(61)
    assert await lock.extend(extended) is None
    assert not await lock.holds(extended)
    assert await lock.acquire() is not None


async def test_holds_refuses_a_lease_with_less_than_the_margin_left(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    lock = FencedLock(f"{tag}margin", 60_000, redis=redis.get, clock=clock)
    a = await lock.acquire()
    assert a is not None
    clock.advance(55)
    assert await lock.holds(a, margin_ms=5_000)
    assert not await lock.holds(a, margin_ms=5_001)


async def test_waiting_gives_up_at_its_deadline(redis: RedisClients, tag: str) -> None:
    name = f"{tag}wait"
    assert await FencedLock(name, 30_000, redis=redis.get).acquire() is not None
    started = time.monotonic()
    assert await FencedLock(name, 30_000, redis=redis.get).acquire(wait_ms=300) is None
    assert 0.3 <= time.monotonic() - started < 5  # the upper bound is loose: a loaded machine is slow
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:  # takes no time: the wait must count what it asked for
        pauses.append(seconds)

    waiter = FencedLock(name, 30_000, redis=redis.get, sleep=sleep, jitter=lambda: 0.5)
    assert await waiter.acquire(wait_ms=2_000) is None
    assert sum(pauses) == pytest.approx(2.0)  # never slept past the deadline
    assert pauses[0] == pytest.approx(0.0075)  # equal jitter: half of 10 ms, plus half of that at 0.5
    assert max(pauses) <= RETRY_CAP_MS / 1000


async def test_a_waiter_is_granted_when_the_holders_lease_ends(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    lock = FencedLock(f"{tag}ends", 5_000, redis=redis.get, clock=clock, sleep=clock.sleep)
    a = await lock.acquire()
    b = await lock.acquire(wait_ms=10_000)
    assert a is not None and b is not None and b.token == a.token + 1
    assert START_MS + 5_000 <= clock.now_ms <= START_MS + 5_000 + RETRY_CAP_MS


async def test_hold_releases_on_exit_and_a_waiter_gets_the_lock_at_once(redis: RedisClients, tag: str) -> None:
    lock = FencedLock(f"{tag}exit", 30_000, redis=redis.get)
    async with lock.hold() as a:
        waiter = asyncio.create_task(lock.acquire(wait_ms=20_000))
        await asyncio.sleep(0.05)
        assert not waiter.done()
    b = await waiter
    assert b is not None and b.token == a.token + 1
    await lock.release(b)
    with pytest.raises(RuntimeError):
        async with lock.hold():
            raise RuntimeError("the block failed")
    assert await lock.acquire() is not None  # released all the same


async def test_a_fenced_script_runs_only_for_the_newest_token(redis: RedisClients, tag: str) -> None:
    log = f"{tag}audit"
    assert await APPEND.run(log, 5, [log], ["a"], redis=redis.get) == 1
    assert await APPEND.run(log, 7, [log], ["b"], redis=redis.get) == 2
    with pytest.raises(StaleToken) as stale:
        await APPEND.run(log, 6, [log], ["stale"], redis=redis.get)
    assert (stale.value.token, stale.value.newest) == (6, 7)
    with pytest.raises(UpstashError, match="WRONGTYPE"):  # a script error is a bug: it propagates
        await FAIL.run(log, 100, [log], ["partial"], redis=redis.get)
    assert await APPEND.run(log, 8, [log], ["c"], redis=redis.get) == 4  # the failed body did not move the fence to 100
    assert await redis.get().execute(["LRANGE", log, 0, -1]) == ["a", "b", "partial", "c"]


async def test_an_unreachable_redis_is_an_outage_never_a_grant(tag: str) -> None:
    dead = RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=1)
    lock = FencedLock(f"{tag}down", 5_000, redis=dead.get)
    with pytest.raises(RedisUnavailable):
        await lock.acquire(wait_ms=1_000)
    with pytest.raises(RedisUnavailable):
        async with lock.hold():
            pytest.fail("the block must not run")
    with pytest.raises(RedisUnavailable):
        await fenced_set(f"{tag}r", 1, "v", redis=dead.get)
    await dead.aclose()


class PausingClient:
    """A Redis client of a process that freezes (a stop-the-world pause) right after one reply."""

    def __init__(self, inner: RedisClients, pause_s: float) -> None:
        self.inner = inner
        self.pause_s = pause_s

    async def execute(self, command: list[Any]) -> Any:
        result = await self.inner.get().execute(command)
        pause_s, self.pause_s = self.pause_s, 0
        # Blocking on purpose: the whole process stops, as in a GC pause.
        time.sleep(pause_s)  # noqa: ASYNC251
        return result

    def pipeline(self) -> RedisPipeline:
        return self.inner.get().pipeline()


async def test_a_grant_that_arrives_after_its_validity_is_released(redis: RedisClients, tag: str) -> None:
    paused = PausingClient(redis, pause_s=0.6)
    lock = FencedLock(f"{tag}late", 500, redis=lambda: paused)
    assert await lock.acquire() is None  # granted, but the reply was read 0.6 s later: past the lease
    assert await FencedLock(f"{tag}late", 10_000, redis=redis.get).acquire() is not None  # released


@pytest.fixture
def own_gateway() -> Iterator[Gateway]:
    """A redis-server and gateway of this test's own: it flushes them."""
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    yield gateway
    gateway.process.stop()
    node.stop()


async def test_tokens_never_go_back_after_flushall(own_gateway: Gateway) -> None:
    clients = RedisClients(RedisSettings(own_gateway.url, own_gateway.token), timeout_s=10)
    lock = FencedLock("nightly", 10_000, redis=clients.get)
    tokens: list[int] = []
    try:
        for flush in (False, True, False, True):
            if flush:  # every counter is lost: the next grant restarts it from Redis TIME
                await clients.get().execute(["FLUSHALL"])
                assert await clients.get().execute(["DBSIZE"]) == 0
            for _ in range(3):
                lease = await lock.acquire()
                assert lease is not None
                tokens.append(lease.token)
                await lock.release(lease)
    finally:
        await clients.aclose()
    assert tokens == sorted(set(tokens))  # strictly increasing
