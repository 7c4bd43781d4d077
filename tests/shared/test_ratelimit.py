"""The rate limiter against the real gateway and Redis, on a single node and on the Cluster.

Windows are driven by a clock the test controls (passed to the script as `now`), so nothing sleeps;
the tests of Redis time itself use the default clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from upstash_redis.errors import UpstashError

from shared import keys
from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.errors import InvalidInput, NotFound, RedisUnavailable
from shared.ratelimit import limiter as limiter_module
from shared.ratelimit.http import decision_headers
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import Limit, Policy
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients
from tests.servers import free_port

START_MS = 1_800_000_000_000  # a minute boundary, far from any real "now"


# Generous timeouts: 500 concurrent checks on a 2-core machine queue for a while, and a timeout here
# would (correctly) fail open, which is not what these tests are about.
SLOW_OK = 20_000
POLICIES = {
    "fixed": Policy(limits=[Limit("fixed_window", 100, 60)], timeout_ms=SLOW_OK),
    "sliding": Policy(limits=[Limit("sliding_window", 100, 60)], timeout_ms=SLOW_OK),
    "bucket": Policy(limits=[Limit("token_bucket", 100, 60, refill=10)], timeout_ms=SLOW_OK),
    "multi": Policy(
        limits=[Limit("fixed_window", 3, 1), Limit("sliding_window", 5, 60), Limit("token_bucket", 50, 1, refill=1)]
    ),
    "tiered": Policy(
        limits=[Limit("fixed_window", 1, 60)],
        tiers={"pro": [Limit("fixed_window", 5, 60)]},
        tier_prefixes={"pk_pro_": "pro"},
        deny=frozenset({"banned"}),
    ),
    "inflight": Policy(limits=[Limit("fixed_window", 1000, 60)], concurrency=2, lease_ttl_s=5),
    "small": Policy(limits=[Limit("fixed_window", 2, 10)], max_cost=10),
}


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=5) as clients:
        yield clients


@pytest.fixture
def gateway_redis(any_gateway: Gateway, redis: RedisClients) -> Gateway:
    return any_gateway


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def limiter(redis: RedisClients, clock: ManualClock) -> RateLimiter:
    return RateLimiter(POLICIES, redis=redis.get, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("policy", ["fixed", "bucket"])
async def test_exactly_the_limit_is_allowed_under_500_concurrent_checks(
    gateway_redis: Gateway, clock: ManualClock, tag: str, policy: str
) -> None:
    # 500 callers at once, as 10 function instances with 50 requests in flight each (one httpx pool
    # queueing 500 requests is slow client-side, and no function instance sees that).
    instances = [RedisClients(RedisSettings(gateway_redis.url, gateway_redis.token), timeout_s=10) for _ in range(10)]
    limiters = [RateLimiter(POLICIES, clock=clock, redis=clients.get) for clients in instances]
    decisions = await asyncio.gather(*(limiters[i % 10].check(policy, f"{tag}user") for i in range(500)))
    assert sum(d.allowed for d in decisions) == 100
    assert not any(d.degraded for d in decisions)
    for clients in instances:
        await clients.aclose()


async def test_sliding_window_never_exceeds_its_bound(limiter: RateLimiter, clock: ManualClock, tag: str) -> None:
    allowed_at: list[int] = []
    for _ in range(8):  # two windows and more, in 15 s steps, 60 concurrent checks per step
        decisions = await asyncio.gather(*(limiter.check("sliding", f"{tag}u") for _ in range(60)))
        allowed_at += [clock.now_ms] * sum(d.allowed for d in decisions)
        clock.advance(15)
    for start in allowed_at:  # any 60 s span holds at most the limit, as sliding windows promise
        assert sum(1 for t in allowed_at if start <= t < start + 60_000) <= 100
    assert len(allowed_at) >= 100


async def test_multi_limit_denies_when_any_limit_is_reached_and_counts_nothing_denied(
    limiter: RateLimiter, clock: ManualClock, tag: str
) -> None:
    user = f"{tag}u"
    assert [(await limiter.check("multi", user)).allowed for _ in range(4)] == [True, True, True, False]
    denied = await limiter.check("multi", user)
    assert denied.reason == "limit"
    assert [s.remaining for s in denied.limits] == [0, 2, 47]  # denied calls consumed nothing
    clock.advance(1)
    assert [(await limiter.check("multi", user)).allowed for _ in range(3)] == [True, True, False]
    assert [s.remaining for s in (await limiter.peek("multi", user)).limits] == [1, 0, 46]


async def test_one_round_trip_per_decision_whatever_the_number_of_limits(
    limiter: RateLimiter, gateway_redis: Gateway, tag: str
) -> None:
    for i in range(32):  # EVALSHA misses once per Redis node: load the script on every node first
        await limiter.check("multi", f"warm-{i}")
    before = gateway_redis.requests()
    for i in range(5):
        await limiter.check("multi", f"{tag}u{i}")
    assert gateway_redis.requests() - before == 5


async def test_blocked_identifier_is_answered_from_the_cache_without_redis(
    limiter: RateLimiter, clock: ManualClock, gateway_redis: Gateway, tag: str
) -> None:
    user = f"{tag}u"
    for _ in range(2):
        await limiter.check("small", user)
    first_denial = await limiter.check("small", user)
    assert not first_denial.allowed and not first_denial.cached
    before = gateway_redis.requests()
    cached = await limiter.check("small", user)
    assert not cached.allowed and cached.cached
    assert 0 < cached.retry_after_ms <= 10_000
    assert gateway_redis.requests() == before
    clock.advance(10)
    assert (await limiter.check("small", user)).allowed


async def test_refund_gives_the_quota_back(limiter: RateLimiter, tag: str) -> None:
    user = f"{tag}u"
    await limiter.check("small", user)
    await limiter.check("small", user)
    refund = await limiter.check("small", user, cost=-1)
    assert refund.allowed and refund.limits[0].remaining == 1
    assert (await limiter.check("small", user)).allowed


async def test_peek_answers_what_the_next_check_gets_and_consumes_nothing(limiter: RateLimiter, tag: str) -> None:
    user = f"{tag}u"
    for _ in range(2):
        peek = await limiter.peek("small", user)
        assert (peek.allowed, peek.limits[0].remaining) == (True, 1)
    await limiter.check("small", user)
    peek = await limiter.peek("small", user)
    assert (peek.allowed, peek.limits[0].remaining) == (True, 0)  # the next check is allowed and leaves 0
    check = await limiter.check("small", user)
    assert (check.allowed, check.limits[0].remaining) == (True, 0)
    exhausted = await limiter.peek("small", user)
    assert (exhausted.allowed, exhausted.reason, exhausted.limits[0].remaining) == (False, "limit", 0)
    assert exhausted.retry_after_ms == (await limiter.check("small", user)).retry_after_ms > 0
    await limiter.reset("small", user)
    assert (await limiter.check("small", user)).allowed


async def test_peek_reports_a_full_concurrency_policy_as_denied(limiter: RateLimiter, tag: str) -> None:
    user = f"{tag}u"
    await limiter.check("inflight", user)
    second = await limiter.check("inflight", user)
    peek = await limiter.peek("inflight", user)
    assert (peek.allowed, peek.reason) == (False, "concurrency")
    assert second.lease is not None
    await limiter.release("inflight", user, second.lease)
    assert (await limiter.peek("inflight", user)).allowed


async def test_block_until_ready_waits_for_the_window(limiter: RateLimiter, clock: ManualClock, tag: str) -> None:
    user = f"{tag}u"
    await limiter.check("small", user, cost=2)
    assert not (await limiter.block_until_ready("small", user, timeout_s=1)).allowed
    started = clock.now_ms
    ready = await limiter.block_until_ready("small", user, timeout_s=30)
    assert ready.allowed
    assert 0 < clock.now_ms - started <= 10_000


async def test_token_bucket_refills_and_allows_bursts(limiter: RateLimiter, clock: ManualClock, tag: str) -> None:
    user = f"{tag}u"
    assert (await limiter.check("bucket", user, cost=100)).allowed
    assert not (await limiter.check("bucket", user)).allowed
    clock.advance(60)
    assert (await limiter.check("bucket", user, cost=10)).allowed
    assert not (await limiter.check("bucket", user)).allowed


async def test_tiers_and_deny_list(limiter: RateLimiter, gateway_redis: Gateway, tag: str) -> None:
    free, pro = f"{tag}free", f"pk_pro_{tag}"
    assert [(await limiter.check("tiered", free)).allowed for _ in range(2)] == [True, False]
    pro_decisions = [await limiter.check("tiered", pro) for _ in range(6)]
    assert [d.allowed for d in pro_decisions] == [True] * 5 + [False]
    assert pro_decisions[0].tier == "pro"
    before = gateway_redis.requests()
    banned = await limiter.check("tiered", "banned")
    assert not banned.allowed and banned.reason == "deny"
    assert gateway_redis.requests() == before


async def test_concurrency_leases_are_limited_released_and_expire(
    limiter: RateLimiter, clock: ManualClock, tag: str
) -> None:
    user = f"{tag}u"
    first, second = await limiter.check("inflight", user), await limiter.check("inflight", user)
    assert first.allowed and second.allowed and first.lease and second.lease
    third = await limiter.check("inflight", user)
    assert not third.allowed and third.reason == "concurrency"
    await limiter.release("inflight", user, first.lease)  # frees room at once, cached block included
    assert (await limiter.check("inflight", user)).allowed
    clock.advance(6)  # the function holding the other leases "died": they expire
    assert (await limiter.check("inflight", user)).allowed


async def test_analytics_count_allowed_and_denied_per_minute(
    limiter: RateLimiter, clock: ManualClock, tag: str
) -> None:
    name = "small"
    before = await limiter.analytics(name, 1)
    for i in range(3):
        await limiter.check(name, f"{tag}a{i}")
    await limiter.check(name, f"{tag}b", cost=2)
    await limiter.check(name, f"{tag}b")
    after = await limiter.analytics(name, 1)
    minute = clock.now_ms // 60_000
    assert after[minute]["allowed"] - before[minute]["allowed"] == 4
    assert after[minute]["denied"] - before[minute]["denied"] == 1


async def test_bad_input_is_refused_and_counts_nothing(limiter: RateLimiter, tag: str) -> None:
    with pytest.raises(NotFound):
        await limiter.check("no-such-policy", "k")
    with pytest.raises(InvalidInput) as huge:
        await limiter.check("small", f"{tag}u", cost=11)
    assert huge.value.field == "cost"
    with pytest.raises(InvalidInput) as long_key:
        await limiter.check("small", "k" * 257)
    assert long_key.value.field == "key"
    assert (await limiter.peek("small", f"{tag}u")).limits[0].remaining == 1  # nothing was consumed


async def test_block_cache_stays_bounded(limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
    monkeypatch.setattr(limiter_module, "MAX_CACHED_BLOCKS", 3)
    for i in range(5):
        await limiter.check("small", f"{tag}{i}", cost=2)
        await limiter.check("small", f"{tag}{i}")  # blocked: remembered
    assert limiter.cached_blocks() == 3
    assert (await limiter.check("small", f"{tag}4")).cached


async def test_a_key_of_the_wrong_type_is_an_error_never_an_outage_allow(
    limiter: RateLimiter, redis: RedisClients, tag: str
) -> None:
    """A bug (here a key holding a string where the limiter keeps a hash) must surface, not fail open."""
    user = f"{tag}u"
    await redis.get().set(keys.ratelimit_state("small", user), "not a hash")
    assert POLICIES["small"].outage == "fail_open"
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        await limiter.check("small", user)


async def test_an_unreachable_redis_is_an_outage_that_fail_open_allows_and_logs(
    caplog: pytest.LogCaptureFixture, tag: str
) -> None:
    down = RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=1)
    policies = {
        "open": Policy(limits=[Limit("fixed_window", 1, 60)], outage="fail_open"),
        "closed": Policy(limits=[Limit("fixed_window", 1, 60)], outage="fail_closed"),
    }
    limiter = RateLimiter(policies, redis=down.get)
    with caplog.at_level("WARNING", logger="stashkit.ratelimit"):
        opened = await limiter.check("open", f"{tag}u")
    assert (opened.allowed, opened.degraded, opened.reason) == (True, True, "outage")
    assert '"event": "ratelimit.degraded"' in caplog.text
    with pytest.raises(RedisUnavailable):
        await limiter.check("closed", f"{tag}u")
    await down.aclose()


async def test_windows_headers_and_analytics_follow_redis_time_when_the_local_clock_is_skewed(
    redis: RedisClients, monkeypatch: pytest.MonkeyPatch, tag: str
) -> None:
    """One instance's wall clock is a day behind: its decisions, their reset times and the analytics it
    writes still follow Redis time, so another instance (correct clock) reads them where they belong."""
    name = f"skew-{uuid.uuid4().hex[:8]}"
    policies = {name: Policy(limits=[Limit("fixed_window", 5, 60)])}
    redis_now_ms = await _redis_time_ms(redis)
    true_time = time.time
    monkeypatch.setattr(time, "time", lambda: true_time() - 86_400)
    skewed = RateLimiter(policies, redis=redis.get)
    decision = await skewed.check(name, f"{tag}u")
    assert abs(decision.now_ms - redis_now_ms) < 60_000
    assert 0 < decision.limits[0].reset_ms - decision.now_ms <= 60_000
    assert 0 < int(decision_headers(decision)["RateLimit-Reset"]) <= 60
    monkeypatch.setattr(time, "time", true_time)
    counts = await RateLimiter(policies, redis=redis.get).analytics(name, 2)
    assert sum(c["allowed"] for c in counts.values()) == 1
    assert decision.now_ms // 60_000 in counts


async def _redis_time_ms(redis: RedisClients) -> int:
    seconds, micros = await redis.get().time()
    return int(seconds) * 1000 + int(micros) // 1000
