"""Rate-limit decisions: one script call per decision, none for an identifier known to be blocked.

limiter = RateLimiter(policies)
decision = await limiter.check("api", "user:42")           # consume 1
await limiter.check("api", "user:42", cost=-1)             # refund it
await limiter.peek("api", "user:42")                       # remaining, consuming nothing
await limiter.reset("api", "user:42")                      # admin: forget the identifier
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from upstash_redis.asyncio import Redis

from shared import keys
from shared.errors import InvalidInput, NotFound, ServiceUnavailable
from shared.ratelimit.policy import Limit, Policy
from shared.ratelimit.script import DECIDE
from shared.redis import get_redis

MAX_IDENTIFIER_CHARS = 256
MAX_CACHED_BLOCKS = 10_000  # identifiers remembered as blocked per process
Clock = Callable[[], int]  # milliseconds since the epoch


@dataclass(frozen=True, slots=True)
class LimitState:
    limit: Limit
    remaining: int
    reset_ms: int


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str
    tier: str
    limits: list[LimitState]
    retry_after_ms: int = 0
    reason: str | None = None  # "limit", "concurrency", "deny", "outage" when not plainly allowed
    lease: str | None = None  # release it when the request ends (concurrency policies)
    cached: bool = False  # answered from the in-process block cache, no Redis call
    degraded: bool = False  # allowed without Redis (fail-open outage policy)

    @property
    def tightest(self) -> LimitState | None:
        return min(self.limits, key=lambda s: (s.remaining, -s.reset_ms), default=None)


@dataclass
class _Blocked:
    until_ms: int
    cost: int
    decision: Decision


@dataclass
class RateLimiter:
    policies: Mapping[str, Policy]
    clock: Clock | None = None  # None: Redis TIME decides windows (one clock for every instance)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    redis: Callable[[], Redis] = get_redis  # the seam tests use to play several function instances
    _blocked: dict[tuple[str, str], _Blocked] = field(default_factory=dict)

    def policy(self, name: str) -> Policy:
        policy = self.policies.get(name)
        if policy is None:
            raise NotFound(f"no rate-limit policy named {name!r}", field="policy")
        return policy

    def now_ms(self) -> int:
        return self.clock() if self.clock is not None else int(time.time() * 1000)

    async def check(self, name: str, identifier: str, cost: int = 1) -> Decision:
        policy = self.policy(name)
        _validate(policy, identifier, cost)
        tier = policy.tier_of(identifier)
        if identifier in policy.deny:
            return Decision(False, name, tier, [], reason="deny")
        if cost > 0 and (hit := self._cached_block(name, identifier, cost)) is not None:
            return hit
        lease = uuid.uuid4().hex if policy.concurrency else None
        decision = await self._run(name, policy, identifier, tier, cost, "check", lease)
        if not decision.allowed and decision.retry_after_ms > 0 and not decision.degraded:
            self._remember_block((name, identifier), _Blocked(self.now_ms() + decision.retry_after_ms, cost, decision))
        elif cost <= 0:
            self._blocked.pop((name, identifier), None)
        return decision

    async def block_until_ready(self, name: str, identifier: str, timeout_s: float, cost: int = 1) -> Decision:
        """Wait (never past `timeout_s`) until the request fits, then consume; denied if it never does."""
        deadline = self.now_ms() + timeout_s * 1000
        while True:
            decision = await self.check(name, identifier, cost)
            wait_ms = decision.retry_after_ms
            if decision.allowed or wait_ms <= 0 or self.now_ms() + wait_ms > deadline:
                return decision
            await self.sleep(wait_ms / 1000)

    async def peek(self, name: str, identifier: str) -> Decision:
        policy = self.policy(name)
        _validate(policy, identifier, 0)
        return await self._run(name, policy, identifier, policy.tier_of(identifier), 0, "peek", None)

    async def reset(self, name: str, identifier: str) -> None:
        policy = self.policy(name)
        _validate(policy, identifier, 0)
        self._blocked.pop((name, identifier), None)
        await self._guarded(policy, self.redis().delete(*_identity_keys(name, identifier)))

    async def release(self, name: str, identifier: str, lease: str) -> None:
        """End an in-flight lease (concurrency policies); a lease never released expires by itself."""
        policy = self.policy(name)
        self._blocked.pop((name, identifier), None)  # a freed lease may admit the next request at once
        await self._guarded(policy, self.redis().zrem(keys.ratelimit_leases(name, identifier), lease))

    async def analytics(self, name: str, minutes: int) -> dict[int, dict[str, int]]:
        """Allowed and denied decisions per minute (epoch minute -> counts) over the last `minutes`:
        one pipeline over the policy's shards, however many identifiers it has."""
        policy = self.policy(name)
        now_minute = self.now_ms() // 60_000
        first = now_minute - minutes + 1
        days = sorted({first // 1440, now_minute // 1440})
        pipeline = self.redis().pipeline()
        for shard in range(keys.RATELIMIT_SHARDS):
            for day in days:
                pipeline.hgetall(keys.ratelimit_stats_for_shard(name, shard, day))
        counts: dict[int, dict[str, int]] = {m: {"allowed": 0, "denied": 0} for m in range(first, now_minute + 1)}
        for table in await self._guarded(policy, pipeline.exec()):
            for field_name, value in table.items():
                minute, outcome = field_name.split(":")
                if int(minute) in counts:
                    counts[int(minute)][outcome] += int(value)
        return counts

    def _remember_block(self, key: tuple[str, str], entry: _Blocked) -> None:
        if len(self._blocked) >= MAX_CACHED_BLOCKS:  # bounded: forget expired blocks, then the oldest
            now = self.now_ms()
            for stale in [k for k, v in self._blocked.items() if v.until_ms <= now]:
                del self._blocked[stale]
            while len(self._blocked) >= MAX_CACHED_BLOCKS:
                del self._blocked[next(iter(self._blocked))]
        self._blocked[key] = entry

    def _cached_block(self, name: str, identifier: str, cost: int) -> Decision | None:
        entry = self._blocked.get((name, identifier))
        if entry is None:
            return None
        remaining_ms = entry.until_ms - self.now_ms()
        if remaining_ms <= 0 or cost < entry.cost:
            del self._blocked[(name, identifier)]
            return None
        d = entry.decision
        return Decision(False, d.policy, d.tier, d.limits, remaining_ms, d.reason, cached=True)

    async def _guarded(self, policy: Policy, call: Awaitable[Any]) -> Any:
        """Await a Redis call within the policy's timeout; any failure becomes ServiceUnavailable."""
        try:
            async with asyncio.timeout(policy.timeout_ms / 1000):
                return await call
        except Exception as exc:  # timeouts, transport errors and gateway errors alike
            raise ServiceUnavailable(f"the rate limiter cannot reach Redis ({type(exc).__name__})") from exc

    async def _run(
        self, name: str, policy: Policy, identifier: str, tier: str, cost: int, mode: str, lease: str | None
    ) -> Decision:
        limits = policy.limits_for(tier)
        now = self.clock() if self.clock is not None else ""
        day = int(self.now_ms() // 86_400_000)
        args: list[str | int | float] = [
            now,
            cost,
            mode,
            keys.RATELIMIT_STATS_TTL_S,
            lease or "",
            policy.concurrency or 0,
            round(policy.lease_ttl_s * 1000),
            len(limits),
        ]
        for limit in limits:
            args.extend(limit.wire())
        script_keys = [
            keys.ratelimit_state(name, identifier),
            keys.ratelimit_stats(name, identifier, day),
            keys.ratelimit_leases(name, identifier),
        ]
        try:
            raw = await self._guarded(policy, DECIDE.run(self.redis(), script_keys, args))
        except ServiceUnavailable:
            if policy.outage == "fail_closed" or mode == "peek":
                raise
            return Decision(True, name, tier, [], reason="outage", degraded=True)
        return _decision(name, tier, limits, raw, lease)


def _validate(policy: Policy, identifier: str, cost: int) -> None:
    if not identifier or len(identifier) > MAX_IDENTIFIER_CHARS:
        raise InvalidInput(f"the key must be 1 to {MAX_IDENTIFIER_CHARS} characters", field="key")
    if abs(cost) > policy.max_cost:
        raise InvalidInput(f"cost must be between -{policy.max_cost} and {policy.max_cost}", field="cost")


def _identity_keys(name: str, identifier: str) -> list[str]:
    return [keys.ratelimit_state(name, identifier), keys.ratelimit_leases(name, identifier)]


def _decision(name: str, tier: str, limits: list[Limit], raw: object, lease: str | None) -> Decision:
    assert isinstance(raw, list)
    allowed, blocking, now_ms, retry_at_ms = (int(v) for v in raw[:4])
    states = [LimitState(limit, int(raw[5 + 3 * i + 1]), int(raw[5 + 3 * i + 2])) for i, limit in enumerate(limits)]
    reason = None if allowed else ("concurrency" if blocking == -2 else "limit")
    retry_after = max(0, retry_at_ms - now_ms) if not allowed else 0
    return Decision(bool(allowed), name, tier, states, retry_after, reason, lease=lease if allowed else None)
