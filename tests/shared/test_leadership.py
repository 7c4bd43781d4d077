"""Leadership (elections with terms) against the real gateway and Redis, on a single node and on the Cluster.

Two `Leadership` objects of one name play two function instances. Terms are driven by a clock the test
controls (a leader "pauses" when the clock jumps), except in the one test of Redis's own expiry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.errors import RedisUnavailable, StaleToken
from shared.locks.fencing import fenced_set
from shared.locks.leader import Leadership
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients
from tests.servers import free_port

START_MS = 1_800_000_000_000


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=10) as clients:
        yield clients


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


def instances(name: str, redis: RedisClients, clock: ManualClock | None = None) -> tuple[Leadership, Leadership]:
    return Leadership(name, 30_000, redis=redis.get, clock=clock), Leadership(
        name, 30_000, redis=redis.get, clock=clock
    )


async def test_split_brain_the_paused_leader_is_deposed_and_its_writes_refused(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    first, second = instances(f"{tag}scheduler", redis, clock)
    state = first.key("state")
    old = await first.campaign()
    assert old is not None and old.expires_at == START_MS + 30_000
    assert await second.campaign() is None  # one leader per term
    assert await first.is_leader(old)
    await fenced_set(state, old.number, "old", issuer=first)
    clock.advance(31)  # the leader pauses past its term (a frozen Lambda)
    new = await second.campaign()
    assert new is not None and new.number > old.number
    # The old leader wakes up: it is told it no longer leads, and its late writes are refused, even
    # before the new leader has written anything.
    assert not await first.is_leader(old)
    with pytest.raises(StaleToken) as stale:
        await fenced_set(state, old.number, "late", issuer=first)
    assert (stale.value.token, stale.value.newest) == (old.number, new.number)
    assert await first.renew(old) is None
    assert not await first.resign(old)
    assert await second.is_leader(new)  # none of that touched the new term
    await fenced_set(state, new.number, "new", issuer=second)
    assert await redis.get().execute(["GET", state]) == "new"


async def test_split_brain_with_terms_that_redis_expires(redis: RedisClients, tag: str) -> None:
    first = Leadership(f"{tag}real", 500, redis=redis.get)
    second = Leadership(f"{tag}real", 500, redis=redis.get)
    old = await first.campaign()
    assert old is not None
    await asyncio.sleep(0.9)  # well past the term
    new = await second.campaign()
    assert new is not None and new.number > old.number
    assert not await first.is_leader(old)
    with pytest.raises(StaleToken):
        await fenced_set(first.key("state"), old.number, "late", issuer=first)


async def test_is_leader_needs_the_safety_margin_left(redis: RedisClients, clock: ManualClock, tag: str) -> None:
    election = Leadership(f"{tag}margin", 30_000, redis=redis.get, clock=clock, safety_margin_ms=3_000)
    term = await election.campaign()
    assert term is not None
    clock.advance(26.5)  # 3.5 s left: enough to act
    assert await election.is_leader(term)
    clock.advance(1)  # 2.5 s left: still the leader in Redis, but too close to the end to start anything
    assert not await election.is_leader(term)
    assert Leadership("x", 30_000).safety_margin_ms == 3_000  # a tenth of the term by default
    with pytest.raises(ValueError, match="margin"):
        Leadership("x", 1_000, safety_margin_ms=1_000)


async def test_an_unreachable_redis_is_an_outage_never_a_term(tag: str) -> None:
    dead = RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=1)
    with pytest.raises(RedisUnavailable):
        await Leadership(f"{tag}down", 5_000, redis=dead.get).campaign()
    await dead.aclose()


async def test_renew_keeps_the_number_and_resign_lets_the_next_leader_in(
    redis: RedisClients, clock: ManualClock, tag: str
) -> None:
    first, second = instances(f"{tag}renew", redis, clock)
    term = await first.campaign()
    assert term is not None
    clock.advance(20)
    renewed = await first.renew(term)
    assert renewed is not None
    assert (renewed.number, renewed.expires_at) == (term.number, START_MS + 50_000)
    clock.advance(20)  # past the first term's end, inside the renewed one
    assert await first.is_leader(renewed)
    assert await second.campaign() is None
    assert await first.resign(renewed)
    successor = await second.campaign()
    assert successor is not None and successor.number == term.number + 1
