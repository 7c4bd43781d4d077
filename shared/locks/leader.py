"""Leader election with terms: at most one leader per term, and a term number that fences the old one.

    election = Leadership("report-scheduler", term_ms=60_000)
    term = await election.campaign()  # Term(number, expires_at), or None while another leads
    if term is not None:
        for chunk in work:
            if not await election.is_leader(term):  # still ours, with time left to act?
                break
            await fenced_set(election.key("state"), term.number, chunk, issuer=election)
        await election.resign(term)  # the next campaign may win at once
    # a leader that keeps leading: term = await election.renew(term)  (same number; None once lost)

A term is a lease on the election (shared/locks/lock.py) and its number is the lease's fencing token,
strictly increasing from one leader to the next, on one endpoint or on a Redlock majority.

**Split brain.** A leader paused past its term (a frozen Lambda, a GC pause) wakes up believing it
leads while another was elected. Two things stop it: `is_leader(term)` answers False unless the term is
still this leader's in Redis *and* has at least `safety_margin_ms` left by both Redis and this process's
monotonic clock (so the leader does not start what it cannot finish in time); and every write it makes
carries `term.number`, which the store refuses once a newer term has written there, or, with
`issuer=election`, once a newer term was merely granted (shared/locks/fencing.py).

**On serverless** "leading" means being the one invocation allowed to run a scheduled task for this
term. With a QStash schedule (say, cron `*/5 * * * *` to POST /api/report), every delivery campaigns:
the winner runs the task, fencing its writes with `term.number`; any other delivery of the same tick
(a retry, a duplicate, an overlapping slow run) gets None and answers 200 at once, so QStash does not
retry it. To run a task at most once per tick, set `term_ms` a little shorter than the schedule's
period and resign only when the run fails (QStash's retry then wins the next campaign): a successful
run keeps its term, which turns away later deliveries of the same tick until it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.clock import Clock
from shared.locks.lock import FencedLock, Lease
from shared.redis import RedisProvider, get_redis


@dataclass(frozen=True, slots=True, kw_only=True)
class Term:
    number: int  # the fencing token: larger than every earlier term's number in this election
    expires_at: int  # epoch ms (Redis time): when the term ends unless renewed
    lease: Lease  # what renew, resign and is_leader present to Redis

    @classmethod
    def of(cls, lease: Lease) -> Term:
        return cls(number=lease.token, expires_at=lease.expires_at, lease=lease)


class Leadership:
    """An election named `name`: terms of `term_ms`, on `endpoints` (1, or 2N+1 for Redlock) or `redis`.
    `safety_margin_ms` (default a tenth of the term) is the time a leader needs left before it acts."""

    def __init__(
        self,
        name: str,
        term_ms: int,
        *,
        endpoints: Sequence[RedisProvider] | None = None,
        redis: RedisProvider = get_redis,
        clock: Clock | None = None,
        safety_margin_ms: int | None = None,
    ) -> None:
        self.safety_margin_ms = term_ms // 10 if safety_margin_ms is None else safety_margin_ms
        if not 0 <= self.safety_margin_ms < term_ms:
            raise ValueError("the safety margin must be at least 0 and shorter than the term")
        self._lock = FencedLock(name, term_ms, endpoints=endpoints, redis=redis, clock=clock, kind="leader")
        self.name = name
        self.term_ms = term_ms

    def __repr__(self) -> str:
        return f"Leadership({self.name!r}, term_ms={self.term_ms})"

    def key(self, resource: str) -> str:
        """A Redis key for `resource` in this election's hash slot (see `FencedLock.key`)."""
        return self._lock.key(resource)

    def fence_counter(self) -> tuple[RedisProvider, str]:
        return self._lock.fence_counter()

    async def campaign(self) -> Term | None:
        """A new term led by this caller, or None while another leader's term runs."""
        lease = await self._lock.acquire()
        return None if lease is None else Term.of(lease)

    async def renew(self, term: Term) -> Term | None:
        """The same term (same number) for another `term_ms`, or None if it has ended or was lost."""
        lease = await self._lock.extend(term.lease)
        return None if lease is None else Term.of(lease)

    async def resign(self, term: Term) -> bool:
        """End the term now; True if it was still this leader's."""
        return await self._lock.release(term.lease)

    async def is_leader(self, term: Term) -> bool:
        """True only if the term is still this leader's with at least `safety_margin_ms` left: check
        before each action that must not outlive the term."""
        return await self._lock.holds(term.lease, self.safety_margin_ms)
