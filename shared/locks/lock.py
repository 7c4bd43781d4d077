"""Mutual exclusion with fencing tokens, on one Redis endpoint or on a Redlock majority of 2N+1.

    lock = FencedLock("nightly-report", lease_ms=30_000)
    async with lock.hold(wait_ms=2_000) as lease:  # LockNotAcquired if still held after 2 s
        await fenced_set(lock.key("report"), lease.token, body, issuer=lock)

    lease = await lock.acquire()  # a Lease (owner, token, expiry), or None while another owner holds it
    lease = await lock.extend(lease)  # the same lease for another lease_ms, or None once it is lost
    await lock.holds(lease, margin_ms=500)  # still ours, with at least 500 ms left?
    await lock.release(lease)  # True if it was still ours; never deletes another owner's lease

**Why a token.** A lease can run out while its holder is paused (a GC pause, a frozen Lambda, a slow
network) and the holder then writes anyway (Kleppmann, "How to do distributed locking", 2016). Every
grant therefore issues a fencing token, larger than every token granted before on this lock; writes
carry it, and the store refuses one older than a token it has already seen (shared/locks/fencing.py).
The lock keeps holders apart most of the time; the token keeps their writes safe the rest of it.

**One round trip.** A grant is one script per endpoint (lease + token: script.py); waiting polls with
jittered backoff up to `wait_ms`, since HTTP Redis has no blocking call. Expiries come from the script's
own time (Redis TIME, or the injected `Clock`) and are returned with the grant; how long this process
may rely on a lease is measured with `time.monotonic()` from before the request was sent, minus a
clock-drift allowance (`Lease.valid_until_s`).

**Several endpoints** (Redlock: redis.io, "Distributed locks with Redis"). With 2N+1 independent
endpoints a grant needs a majority within the validity time: the lease, minus the time the attempt
took, minus a drift allowance of 1% of the lease plus 2 ms. The endpoints are asked in parallel; an
unavailable one counts as a "no"; a failed attempt releases what it got on every endpoint (those that
did not answer too: the grant may have happened and its reply been lost). Fewer than a majority
answering is an outage (`RedisUnavailable`), never a silent "not acquired".

*Tokens across endpoints.* Each endpoint keeps its own counter, so a token is made monotonic like this:
every granting endpoint increments its counter; the token is the largest of those values; before it is
returned, a majority must hold a counter at least that large (those already there, plus a write-back to
lagging ones when they are fewer than a majority). Any later grant is made by a majority too, and two
majorities share an endpoint: that one holds a counter >= the earlier token before the later grant
increments it, so the later token is larger. Counters never go down (write-backs and releases only
raise them, nothing expires them), so tokens strictly increase in grant order whichever majority grants.
A release also raises a lagging counter on its way, for free.

*Limits.* This is Redlock's safety argument, with its assumptions: clocks (each endpoint's, and this
process's monotonic clock) drift by less than the allowance, and an endpoint does not come back from a
crash having lost leases it had granted within the last lease time (restart it empty after one lease, or
with fsync-always persistence). Where those fail, two holders can overlap, which is why the token
exists: writes fenced by the resource stay safe. Leases of a failed attempt on an endpoint that did not
answer stay until they expire. On one endpoint, a failover to a replica that had not yet received the
last writes can lose a lease and rewind the counter; several independent endpoints tolerate that for a
minority of them. A counter that is lost outright (FLUSHALL, eviction) restarts from Redis TIME in
microseconds, above every token issued while at most one lease is granted per microsecond (a grant
takes one script run, and a release or an expiry another), as long as that server's clock has not gone
backwards past the time the old counter was started (keys.lock_counter).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Literal

from shared import keys
from shared.clock import Clock, RedisClock
from shared.errors import LockNotAcquired, RedisUnavailable
from shared.locks.quorum import Quorum
from shared.locks.script import ACQUIRE, CHECK, EXTEND, RAISE, RELEASE
from shared.redis import RedisProvider, get_redis
from shared.scripts import ScriptArg

# Redlock's allowance for clock drift: 1% of the lease plus 2 ms for Redis's expiry precision (the
# reference implementations' CLOCK_DRIFT_FACTOR = 0.01 and "+ 2").
DRIFT_FACTOR = 0.01
DRIFT_MS = 2
# Waiting: "equal jitter" backoff between polls, from 10 ms doubling to 200 ms (Brooker, "Exponential
# Backoff And Jitter", AWS Architecture Blog, 2015): contenders spread out instead of polling in step.
RETRY_BASE_MS = 10
RETRY_CAP_MS = 200

Kind = Literal["lock", "leader"]
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger("stashkit.locks")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    name: str  # the lock's
    owner: str  # this grant's random id: only it extends or releases the lease
    token: int  # the fencing token: larger than every token granted before on this lock
    expires_at: int  # epoch ms, in the granting script's time (the earliest endpoint's): when Redis frees it
    valid_until_s: float  # time.monotonic() after which this process must not rely on the lease

    def remaining_ms(self) -> int:
        """How long this process may still rely on the lease (0 once it may not)."""
        return max(0, int((self.valid_until_s - time.monotonic()) * 1000))


class FencedLock:
    """A named lock whose every grant carries a fencing token. The object holds no lease: share one
    across tasks, or make one per call; leases are the values `acquire` returns.

    `endpoints`: the Redis REST endpoints (providers like `get_redis`) the lock lives on, 1 (default:
    `redis`) or 2N+1 for Redlock. `clock`: whose time leases follow (Redis TIME by default). `sleep` and
    `jitter` (a float in [0, 1)) pace the wait loop. `kind` keeps locks and elections (shared/locks/
    leader.py) of one name apart."""

    def __init__(
        self,
        name: str,
        lease_ms: int,
        *,
        endpoints: Sequence[RedisProvider] | None = None,
        redis: RedisProvider = get_redis,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        kind: Kind = "lock",
    ) -> None:
        if not name or lease_ms < 10:
            raise ValueError("a lock needs a name and a lease of at least 10 ms")
        if endpoints is not None and redis is not get_redis:
            raise ValueError("pass the endpoints, or one redis provider, not both")
        self.name = name
        self.lease_ms = lease_ms
        self.kind = kind
        self._quorum = Quorum(endpoints or [redis])
        self._lease_key = keys.lock_lease(kind, name)
        self._counter_key = keys.lock_counter(kind, name)
        self._clock = clock or RedisClock()
        self._sleep = sleep
        self._jitter = jitter
        # No reply is worth waiting for past the lease itself: it could no longer grant anything.
        self._timeout_s = lease_ms / 1000
        self._drift_s = (lease_ms * DRIFT_FACTOR + DRIFT_MS) / 1000

    def __repr__(self) -> str:
        return f"FencedLock({self.name!r}, lease_ms={self.lease_ms}, endpoints={len(self._quorum.endpoints)})"

    def key(self, resource: str) -> str:
        """A Redis key for `resource` in this lock's hash slot (fenced writes to it can check the lock's
        counter: shared/locks/fencing.py)."""
        return keys.lock_resource(self.kind, self.name, resource)

    def fence_counter(self) -> tuple[RedisProvider, str]:
        """The endpoint and key of the counter that issues this lock's tokens (one endpoint only: with
        several, no single counter holds the newest token)."""
        if len(self._quorum.endpoints) != 1:
            raise ValueError("a lock on several endpoints has no single counter to fence against")
        return self._quorum.endpoints[0], self._counter_key

    async def acquire(self, wait_ms: int = 0) -> Lease | None:
        """The lease, or None if another owner still holds the lock after `wait_ms` (never slept past)."""
        started, slept_s, attempt = time.monotonic(), 0.0, 0
        while True:
            lease, holder_left_ms = await self._attempt()
            left_s = wait_ms / 1000 - max(time.monotonic() - started, slept_s)
            if lease is not None or left_s <= 0:
                return lease
            pause_s = min(self._pause_ms(attempt, holder_left_ms) / 1000, left_s)
            await self._sleep(pause_s)
            slept_s += pause_s  # an injected sleep may not take real time: count what was asked for
            attempt += 1

    async def extend(self, lease: Lease) -> Lease | None:
        """The lease for another `lease_ms` from now, or None if it expired or is another owner's (what
        any endpoint extended is then released)."""
        started = time.monotonic()
        answers = await self._quorum.ask(
            EXTEND, [self._lease_key], [lease.owner, self.lease_ms, self._now()], self._timeout_s
        )
        extended = [reply for reply in answers.replies.values() if reply[0] == 1]
        valid_until_s = started + self.lease_ms / 1000 - self._drift_s
        if len(extended) >= self._quorum.majority and time.monotonic() < valid_until_s:
            expires_at = min(reply[2] for reply in extended)
            return replace(lease, expires_at=expires_at, valid_until_s=valid_until_s)
        if extended or answers.outages:
            await self._release_everywhere(lease.owner, lease.token)
        self._quorum.require_majority(answers)
        return None

    async def release(self, lease: Lease) -> bool:
        """End the lease; True if it was still ours (on a majority). Another owner's lease is never
        touched: the script checks the owner and deletes in one step."""
        answers = await self._quorum.ask(
            RELEASE, [self._lease_key, self._counter_key], [lease.owner, lease.token], self._timeout_s
        )
        self._quorum.require_majority(answers)
        return sum(reply[0] for reply in answers.replies.values()) >= self._quorum.majority

    async def holds(self, lease: Lease, margin_ms: int = 0) -> bool:
        """Is the lease still ours with at least `margin_ms` left, both by this process's clock (no
        round trip if not) and by Redis (on a majority)?"""
        if time.monotonic() + margin_ms / 1000 >= lease.valid_until_s:
            return False
        answers = await self._quorum.ask(
            CHECK, [self._lease_key], [lease.owner, margin_ms, self._now()], self._timeout_s
        )
        self._quorum.require_majority(answers)
        return sum(reply[0] for reply in answers.replies.values()) >= self._quorum.majority

    @asynccontextmanager
    async def hold(self, wait_ms: int = 0) -> AsyncIterator[Lease]:
        """`async with lock.hold(wait_ms) as lease:` the block runs holding the lease, which is released
        when it ends, however it ends. Raises `LockNotAcquired` if the lock stays held past `wait_ms`."""
        lease = await self.acquire(wait_ms)
        if lease is None:
            raise LockNotAcquired(self.name, wait_ms)
        try:
            yield lease
        finally:
            await self._release_on_exit(lease)

    async def _attempt(self) -> tuple[Lease | None, int]:
        """One try on every endpoint: the lease, or None and how long (ms) the holder's lease has left."""
        owner, started = uuid.uuid4().hex, time.monotonic()
        args: list[ScriptArg] = [owner, self.lease_ms, self._now()]
        answers = await self._quorum.ask(ACQUIRE, [self._lease_key, self._counter_key], args, self._timeout_s)
        granted = {index: reply for index, reply in answers.replies.items() if reply[0] == 1}
        lease = await self._issue(owner, started, granted) if len(granted) >= self._quorum.majority else None
        if lease is None:
            if granted or answers.outages:  # a reply may have been lost with a grant in it
                await self._release_everywhere(owner, 0)
            self._quorum.require_majority(answers)
        held_for = [reply[3] - reply[2] for reply in answers.replies.values() if reply[0] == 0]
        return lease, min(held_for, default=0)

    async def _issue(self, owner: str, started: float, granted: dict[int, list[int]]) -> Lease | None:
        """The lease of a majority's grant: the largest of their counters as its token, written back to
        a majority first if fewer hold it (module docstring), and still valid when that is done."""
        token = max(reply[1] for reply in granted.values())
        lagging = [index for index, reply in granted.items() if reply[1] < token]
        holding = len(granted) - len(lagging)
        if holding < self._quorum.majority:
            raised = await self._quorum.ask(RAISE, [self._counter_key], [token], self._timeout_s, on=lagging)
            holding += len(raised.replies)
        valid_until_s = started + self.lease_ms / 1000 - self._drift_s
        if holding < self._quorum.majority or time.monotonic() >= valid_until_s:
            return None
        expires_at = min(reply[3] for reply in granted.values())
        return Lease(name=self.name, owner=owner, token=token, expires_at=expires_at, valid_until_s=valid_until_s)

    async def _release_everywhere(self, owner: str, token: int) -> None:
        """Best effort, after a failed attempt: what an endpoint does not answer expires by itself."""
        await self._quorum.ask(RELEASE, [self._lease_key, self._counter_key], [owner, token], self._timeout_s)

    async def _release_on_exit(self, lease: Lease) -> None:
        """Release at the end of `hold`. An outage here is logged, not raised: the block's work is done,
        and the lease ends by itself at its expiry, which is what an unreleased lease is for."""
        try:
            released = await self.release(lease)
        except RedisUnavailable as exc:
            _log("lock.release_failed", lease, error=str(exc))
            return
        if not released:  # the lease ran out inside the block: only fenced writes were protected after that
            _log("lock.lost", lease, error="the lease expired before the block ended")

    def _pause_ms(self, attempt: int, holder_left_ms: int) -> float:
        ceiling: float = min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** min(attempt, 16))
        pause_ms = ceiling / 2 + self._jitter() * ceiling / 2
        if holder_left_ms > 0:  # poll again as soon as the holder's lease ends by itself, not later
            pause_ms = min(pause_ms, holder_left_ms + 1)
        return pause_ms

    def _now(self) -> int | str:
        now = self._clock.script_now_ms()
        return "" if now is None else now


def _log(event: str, lease: Lease, *, error: str) -> None:
    log.warning(json.dumps({"event": event, "lock": lease.name, "token": lease.token, "error": error}))
