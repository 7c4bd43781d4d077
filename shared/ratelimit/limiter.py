"""Rate-limit decisions: one script call per decision, none for an identifier known to be blocked.

    limiter = RateLimiter(policies)
    decision = await limiter.check("api", "user:42")           # consume 1
    await limiter.check("api", "user:42", cost=-1)             # refund it
    await limiter.peek("api", "user:42")                       # what the next check would get
    await limiter.reset("api", "user:42")                      # admin: forget the identifier

Time: the script reads Redis TIME (or the injected clock's time) and returns it; a decision's headers,
its cached block and its analytics minute all derive from that one time (`Decision.now_ms`). Between
decisions the limiter estimates Redis time as the last decision's time plus the monotonic time since,
so a function whose wall clock is skewed still agrees with every other instance.

Failures: only `RedisUnavailable` (a transport failure, or the policy's `timeout_ms` running out) is an
outage, and only then does a fail-open policy allow, logged as degraded. A Redis reply error (a key of
the wrong type, a script error) is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from shared import keys
from shared.clock import Clock, RedisClock
from shared.errors import InvalidInput, NotFound, RedisUnavailable
from shared.metrics import current_request
from shared.ratelimit.policy import Limit, Policy
from shared.ratelimit.script import DECIDE
from shared.redis import RedisProvider, get_redis, redis_deadline

MAX_IDENTIFIER_CHARS = 256
MAX_CACHED_BLOCKS = 10_000  # identifiers remembered as blocked per process
Reason = Literal["limit", "concurrency", "deny", "outage"]
Mode = Literal["check", "peek"]
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger("stashkit.ratelimit")


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitState:
    limit: Limit
    remaining: int
    reset_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    policy: str
    tier: str
    limits: list[LimitState]
    now_ms: int  # the time the decision was made at (Redis time); 0 when none is known (an outage)
    retry_after_ms: int = 0
    reason: Reason | None = None  # why it is not plainly allowed
    lease: str | None = None  # release it when the request ends (concurrency policies)
    cached: bool = False  # answered from the in-process block cache, no Redis call
    degraded: bool = False  # allowed without Redis (fail-open outage policy)

    @property
    def tightest(self) -> LimitState | None:
        return min(self.limits, key=lambda s: (s.remaining, -s.reset_ms), default=None)


@dataclass(frozen=True, slots=True)
class _Blocked:
    until_ms: int  # in decision time
    cost: int
    decision: Decision


class RateLimiter:
    """Decisions for named policies. One per process is enough (`shared.ratelimit.http.default_limiter`);
    tests make several to play several function instances.

    `redis` gives the client for the running loop; `clock` says whose time windows follow (Redis TIME
    by default); `sleep` is what `block_until_ready` waits with."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        *,
        redis: RedisProvider = get_redis,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.policies = policies
        self._redis = redis
        self._clock = clock or RedisClock()
        self._sleep = sleep
        self._blocked: dict[tuple[str, str], _Blocked] = {}
        self._offset_ms: int | None = None  # Redis time minus monotonic time, from the last decision

    def __repr__(self) -> str:
        return f"RateLimiter(policies={sorted(self.policies)}, clock={self._clock!r})"

    def policy(self, name: str) -> Policy:
        policy = self.policies.get(name)
        if policy is None:
            raise NotFound(f"no rate-limit policy named {name!r}", field="policy")
        return policy

    def cached_blocks(self) -> int:
        """How many identifiers this process remembers as blocked."""
        return len(self._blocked)

    async def check(self, name: str, identifier: str, cost: int = 1) -> Decision:
        policy = self.policy(name)
        _validate(policy, identifier, cost)
        tier = policy.tier_of(identifier)
        if identifier in policy.deny:
            return Decision(allowed=False, policy=name, tier=tier, limits=[], now_ms=0, reason="deny")
        if cost > 0 and (hit := self._cached_block(name, identifier, cost)) is not None:
            return hit
        lease = uuid.uuid4().hex if policy.concurrency else None
        decision = await self._run(name, policy, identifier, tier, cost, "check", lease)
        if not decision.allowed and decision.retry_after_ms > 0 and not decision.degraded:
            until = decision.now_ms + decision.retry_after_ms
            self._remember_block((name, identifier), _Blocked(until, cost, decision))
        elif cost <= 0:
            self._blocked.pop((name, identifier), None)
        return decision

    async def block_until_ready(self, name: str, identifier: str, timeout_s: float, cost: int = 1) -> Decision:
        """Wait (never past `timeout_s`) until the request fits, then consume; denied if it never does."""
        waited_ms = 0
        while True:
            decision = await self.check(name, identifier, cost)
            wait_ms = decision.retry_after_ms
            if decision.allowed or wait_ms <= 0 or waited_ms + wait_ms > timeout_s * 1000:
                return decision
            await self._sleep(wait_ms / 1000)
            waited_ms += wait_ms

    async def peek(self, name: str, identifier: str) -> Decision:
        """What a check of cost 1 would answer now, consuming and recording nothing."""
        policy = self.policy(name)
        _validate(policy, identifier, 1)
        return await self._run(name, policy, identifier, policy.tier_of(identifier), 1, "peek", None)

    async def reset(self, name: str, identifier: str) -> None:
        policy = self.policy(name)
        _validate(policy, identifier, 0)
        self._blocked.pop((name, identifier), None)
        command = ["DEL", keys.ratelimit_state(name, identifier), keys.ratelimit_leases(name, identifier)]
        async with redis_deadline(policy.timeout_ms / 1000):
            await self._redis().execute(command)

    async def release(self, name: str, identifier: str, lease: str) -> None:
        """End an in-flight lease (concurrency policies); a lease never released expires by itself."""
        policy = self.policy(name)
        self._blocked.pop((name, identifier), None)  # a freed lease may admit the next request at once
        async with redis_deadline(policy.timeout_ms / 1000):
            await self._redis().execute(["ZREM", keys.ratelimit_leases(name, identifier), lease])

    async def analytics(self, name: str, minutes: int) -> dict[int, dict[str, int]]:
        """Allowed and denied decisions per minute (epoch minute -> counts) over the last `minutes`, by
        Redis time: one pipeline over the policy's shards, however many identifiers it has (plus one
        TIME call unless a clock is injected)."""
        policy = self.policy(name)
        ring = keys.RATELIMIT_STATS_RING_MINUTES
        if not 1 <= minutes <= ring // 2:
            raise InvalidInput(f"minutes must be between 1 and {ring // 2}", field="minutes")
        async with redis_deadline(policy.timeout_ms / 1000):
            now_ms = self._clock.script_now_ms()
            if now_ms is None:
                seconds, micros = await self._redis().execute(["TIME"])
                now_ms = int(seconds) * 1000 + int(micros) // 1000
            wanted = range(now_ms // 60_000 - minutes + 1, now_ms // 60_000 + 1)
            fields = [f"{kind}{minute % ring}" for minute in wanted for kind in "mad"]
            pipeline = self._redis().pipeline()
            for shard in range(keys.RATELIMIT_SHARDS):
                pipeline.execute(["HMGET", keys.ratelimit_stats_for_shard(name, shard), *fields])
            tables = await pipeline.exec()
        counts = {minute: {"allowed": 0, "denied": 0} for minute in wanted}
        for values in tables:
            for i, minute in enumerate(wanted):
                stamp, allowed, denied = values[3 * i : 3 * i + 3]
                if stamp is not None and int(stamp) == minute:  # else the slot holds an older minute
                    counts[minute]["allowed"] += int(allowed or 0)
                    counts[minute]["denied"] += int(denied or 0)
        return counts

    def _estimated_now_ms(self) -> int | None:
        """Decision time now: the injected clock's, else the last decision's plus the monotonic time since."""
        fixed = self._clock.script_now_ms()
        if fixed is not None:
            return fixed
        if self._offset_ms is None:
            return None
        return round(time.monotonic() * 1000) + self._offset_ms

    def _remember_block(self, key: tuple[str, str], entry: _Blocked) -> None:
        if len(self._blocked) >= MAX_CACHED_BLOCKS:  # bounded: forget expired blocks, then the oldest
            now = self._estimated_now_ms() or 0
            for stale in [k for k, v in self._blocked.items() if v.until_ms <= now]:
                del self._blocked[stale]
            while len(self._blocked) >= MAX_CACHED_BLOCKS:
                del self._blocked[next(iter(self._blocked))]
        self._blocked[key] = entry

    def _cached_block(self, name: str, identifier: str, cost: int) -> Decision | None:
        entry = self._blocked.get((name, identifier))
        now = self._estimated_now_ms()
        if entry is None or now is None:
            return None
        if entry.until_ms <= now or cost < entry.cost:
            del self._blocked[(name, identifier)]
            return None
        d = entry.decision
        return Decision(
            allowed=False,
            policy=d.policy,
            tier=d.tier,
            limits=d.limits,
            now_ms=now,
            retry_after_ms=entry.until_ms - now,
            reason=d.reason,
            cached=True,
        )

    async def _run(
        self, name: str, policy: Policy, identifier: str, tier: str, cost: int, mode: Mode, lease: str | None
    ) -> Decision:
        limits = policy.limits_for(tier)
        now = self._clock.script_now_ms()
        args: list[str | int | float] = [
            "" if now is None else now,
            cost,
            mode,
            keys.RATELIMIT_STATS_TTL_S,
            lease or "",
            policy.concurrency or 0,
            round(policy.lease_ttl_s * 1000),
            keys.RATELIMIT_STATS_RING_MINUTES,
            len(limits),
        ]
        for limit in limits:
            args.extend(limit.wire())
        script_keys = [
            keys.ratelimit_state(name, identifier),
            keys.ratelimit_stats(name, identifier),
            keys.ratelimit_leases(name, identifier),
        ]
        try:
            async with redis_deadline(policy.timeout_ms / 1000):
                raw = await DECIDE.run(self._redis(), script_keys, args)
        except RedisUnavailable as exc:
            if policy.outage == "fail_closed" or mode == "peek":
                raise
            _log_degraded(name, exc)
            return Decision(allowed=True, policy=name, tier=tier, limits=[], now_ms=0, reason="outage", degraded=True)
        decision = _decision(name, tier, limits, raw, lease)
        self._offset_ms = decision.now_ms - round(time.monotonic() * 1000)
        return decision


def _validate(policy: Policy, identifier: str, cost: int) -> None:
    if not identifier or len(identifier) > MAX_IDENTIFIER_CHARS:
        raise InvalidInput(f"the key must be 1 to {MAX_IDENTIFIER_CHARS} characters", field="key")
    if abs(cost) > policy.max_cost:
        raise InvalidInput(f"cost must be between -{policy.max_cost} and {policy.max_cost}", field="cost")


def _log_degraded(policy: str, exc: RedisUnavailable) -> None:
    request = current_request()
    line = {
        "event": "ratelimit.degraded",
        "policy": policy,
        "outage": "fail_open",
        "error": str(exc),
        "request_id": request.request_id if request else None,
    }
    log.warning(json.dumps(line))


def _decision(name: str, tier: str, limits: list[Limit], raw: object, lease: str | None) -> Decision:
    assert isinstance(raw, list)
    allowed, blocking, now_ms, retry_at_ms = (int(v) for v in raw[:4])
    states = [
        LimitState(limit=limit, remaining=int(raw[5 + 3 * i + 1]), reset_ms=int(raw[5 + 3 * i + 2]))
        for i, limit in enumerate(limits)
    ]
    reason: Reason | None = None if allowed else ("concurrency" if blocking == -2 else "limit")
    return Decision(
        allowed=bool(allowed),
        policy=name,
        tier=tier,
        limits=states,
        now_ms=now_ms,
        retry_after_ms=max(0, retry_at_ms - now_ms) if not allowed else 0,
        reason=reason,
        lease=lease if allowed else None,
    )
