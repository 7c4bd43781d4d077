"""upstash-ratelimit 1.2.0, sync and async, through the gateway: its scripts carry the Upstash-only
`allow-key-locking` shebang that stock Redis rejects (reference G11). Identifiers carry a hash tag so
the sliding window's two keys share a slot on the Cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from upstash_ratelimit import FixedWindow, Ratelimit, SlidingWindow, TokenBucket
from upstash_ratelimit.asyncio import Ratelimit as AsyncRatelimit
from upstash_ratelimit.limiter import Limiter
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis

from tests.conftest import Gateway

LIMITERS: dict[str, Limiter] = {
    "fixed": FixedWindow(max_requests=3, window=60),
    "sliding": SlidingWindow(max_requests=3, window=60),
    "bucket": TokenBucket(max_tokens=3, refill_rate=1, interval=60),
}


@pytest.fixture
def redis(any_gateway: Gateway) -> Iterator[Redis]:
    with Redis(any_gateway.url, any_gateway.token, rest_retries=0) as client:
        yield client


def identifier() -> str:
    return f"{{user-{uuid.uuid4().hex[:10]}}}"


@pytest.mark.parametrize("algorithm", sorted(LIMITERS))
def test_limit_allows_up_to_the_quota_then_denies(redis: Redis, algorithm: str) -> None:
    ratelimit = Ratelimit(redis, LIMITERS[algorithm], prefix=f"rl-{algorithm}")
    user = identifier()
    assert ratelimit.get_remaining(user) == 3
    decisions = [ratelimit.limit(user) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[0].limit == 3
    assert decisions[3].reset > time.time()
    assert ratelimit.get_remaining(user) == 0
    assert ratelimit.get_reset(user) > time.time() - 1
    assert ratelimit.limit(identifier(), rate=3).allowed
    assert not ratelimit.limit(identifier(), rate=4).allowed


WINDOW_MS = 600


def at_the_start_of_a_window() -> None:
    """Sleep until just past a window boundary (upstash-ratelimit numbers windows from the epoch by the
    client's clock), so the calls that must share a window are not split by a boundary on a busy machine."""
    time.sleep((WINDOW_MS - time.time() * 1000 % WINDOW_MS) / 1000 + 0.005)


@pytest.mark.parametrize(
    "limiter",
    [
        FixedWindow(1, WINDOW_MS, unit="ms"),
        SlidingWindow(1, WINDOW_MS, unit="ms"),
        TokenBucket(1, 1, WINDOW_MS, unit="ms"),
    ],
    ids=["fixed", "sliding", "bucket"],
)
def test_block_until_ready_waits_for_the_next_window(redis: Redis, limiter: Limiter) -> None:
    ratelimit = Ratelimit(redis, limiter, prefix="rl-block")
    user = identifier()
    at_the_start_of_a_window()
    assert ratelimit.limit(user).allowed
    assert not ratelimit.limit(user).allowed
    assert ratelimit.block_until_ready(user, timeout=5).allowed
    assert not ratelimit.block_until_ready(user, timeout=0.01).allowed


@pytest.mark.parametrize("algorithm", sorted(LIMITERS))
async def test_async_ratelimit(any_gateway: Gateway, algorithm: str) -> None:
    async with AsyncRedis(any_gateway.url, any_gateway.token, rest_retries=0) as redis:
        ratelimit = AsyncRatelimit(redis, LIMITERS[algorithm], prefix=f"arl-{algorithm}")
        user = identifier()
        decisions = [await ratelimit.limit(user) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert await ratelimit.get_remaining(user) == 0
        assert await ratelimit.get_reset(user) > time.time() - 1
