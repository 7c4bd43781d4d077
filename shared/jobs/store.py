"""Each message's status record, and the effect-once claim that makes an at-least-once delivery run once.

QStash delivers at least once: a retry after a lost 200, or two deliveries of one message at the same
time. Before a handler runs, its delivery **claims** the message in one script: a message that already
succeeded (or was skipped, or died) is acknowledged without running; one that another delivery is
running right now is refused as busy (the caller answers a retryable 409 with Retry-After); otherwise the
delivery takes the claim until `timeout + CLAIM_GRACE_MS` and runs. When the run ends, **finish** records
the outcome, but only for the claim's owner. So a success is recorded once and never run again; a
crashed run's claim expires by itself (the handler is cancelled at its timeout, so a live run never
outlasts its claim), and the next retry can run. Two round trips per successful run: claim and finish.

The record (shared/keys.py `job_status`, a week's TTL):
    state        queued | running | succeeded | failed | retrying | skipped | dead
    job, attempts, owner, claim_until, enqueued_ms, started_ms, finished_ms, last_duration_ms,
    run_ms (the sum of every attempt's duration), last_error, schedule_id
Times come from the script's own clock (Redis TIME, or an injected one), never the function's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared import keys
from shared.clock import Clock, RedisClock
from shared.redis import RedisProvider, get_redis
from shared.scripts import NOW_MS, Script

# How long a claim outlives its run's timeout: the time to cancel the handler and send `finish`.
CLAIM_GRACE_MS = 2_000
State = Literal["queued", "running", "succeeded", "failed", "retrying", "skipped", "dead"]
FinalState = Literal["succeeded", "failed", "retrying", "skipped", "dead"]
ClaimOutcome = Literal["claimed", "done", "busy"]

# KEYS: 1 status record. ARGV: 1 now ms ("" = Redis TIME), 2 claim owner, 3 claim ms, 4 job, 5 TTL s,
# 6 schedule id. Returns {outcome, now, attempts (claimed) | claim_until (busy) | state (done)}.
CLAIM = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'succeeded' or state == 'skipped' or state == 'dead' then return {'done', now, state} end
if state == 'running' then
  local held = tonumber(redis.call('HGET', KEYS[1], 'claim_until') or '0')
  if held > now then return {'busy', now, held} end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'job', ARGV[4], 'owner', ARGV[2],
  'claim_until', now + tonumber(ARGV[3]), 'started_ms', now)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'schedule_id', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return {'claimed', now, attempts}
"""
)

# KEYS: 1 status record. ARGV: 1 now ms, 2 claim owner, 3 final state, 4 error ("" none), 5 TTL s.
# Returns 1 when recorded, 0 when the claim was no longer this owner's.
FINISH = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
local started = tonumber(redis.call('HGET', KEYS[1], 'started_ms') or now)
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'finished_ms', now, 'last_duration_ms', now - started,
  'claim_until', 0)
redis.call('HINCRBY', KEYS[1], 'run_ms', now - started)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[4]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return 1
"""
)

MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    outcome: ClaimOutcome
    now_ms: int
    attempts: int = 0  # claimed: how many deliveries have claimed the message, this one included
    busy_until_ms: int = 0  # busy: when the other delivery's claim expires
    state: str | None = None  # done: the recorded final state


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRecord:
    message_id: str
    state: State
    job: str | None
    attempts: int
    enqueued_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    last_duration_ms: int | None
    run_ms: int
    last_error: str | None
    schedule_id: str | None


class JobStore:
    """Status records and claims, over one Redis endpoint (injectable: `redis`, `clock`)."""

    def __init__(self, *, redis: RedisProvider = get_redis, clock: Clock | None = None) -> None:
        self._redis = redis
        self._clock = clock or RedisClock()

    @property
    def redis(self) -> RedisProvider:
        return self._redis

    def _now(self) -> int | str:
        now = self._clock.script_now_ms()
        return "" if now is None else now

    async def claim(self, message_id: str, owner: str, job: str, claim_ms: int, schedule_id: str | None) -> Claim:
        args = [self._now(), owner, claim_ms + CLAIM_GRACE_MS, job, keys.JOB_STATUS_TTL_S, schedule_id or ""]
        raw = await CLAIM.run(self._redis(), [keys.job_status(message_id)], args)
        assert isinstance(raw, list)
        outcome, now = str(raw[0]), int(raw[1])
        if outcome == "claimed":
            return Claim(outcome="claimed", now_ms=now, attempts=int(raw[2]))
        if outcome == "busy":
            return Claim(outcome="busy", now_ms=now, busy_until_ms=int(raw[2]))
        return Claim(outcome="done", now_ms=now, state=str(raw[2]))

    async def finish(self, message_id: str, owner: str, state: FinalState, error: str | None = None) -> bool:
        """Record how the claimed run ended; False if the claim had passed to another delivery."""
        args = [self._now(), owner, state, (error or "")[:MAX_ERROR_CHARS], keys.JOB_STATUS_TTL_S]
        return await FINISH.run(self._redis(), [keys.job_status(message_id)], args) == 1

    async def mark_queued(self, message_id: str, job: str, enqueued_ms: int | None = None) -> None:
        """A new record for a published message (kept as it is if a delivery already got there first)."""
        key = keys.job_status(message_id)
        pipeline = self._redis().pipeline()
        pipeline.execute(["HSETNX", key, "state", "queued"])
        pipeline.execute(["HSETNX", key, "job", job])
        if enqueued_ms is not None:
            pipeline.execute(["HSETNX", key, "enqueued_ms", enqueued_ms])
        pipeline.execute(["EXPIRE", key, keys.JOB_STATUS_TTL_S])
        await pipeline.exec()

    async def mark(self, message_id: str, state: State, error: str | None = None) -> None:
        """Set a message's state from outside a run (the dead-letter callback marks it `dead`)."""
        key = keys.job_status(message_id)
        pipeline = self._redis().pipeline()
        pipeline.execute(["HSET", key, "state", state, *(("last_error", error[:MAX_ERROR_CHARS]) if error else ())])
        pipeline.execute(["EXPIRE", key, keys.JOB_STATUS_TTL_S])
        await pipeline.exec()

    async def status(self, message_id: str) -> StatusRecord | None:
        flat = await self._redis().execute(["HGETALL", keys.job_status(message_id)])
        fields: dict[str, str] = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        if not fields:
            return None

        def number(name: str) -> int | None:
            return int(fields[name]) if fields.get(name) else None

        return StatusRecord(
            message_id=message_id,
            state=fields.get("state", "queued"),  # type: ignore[arg-type]
            job=fields.get("job"),
            attempts=int(fields.get("attempts", 0)),
            enqueued_ms=number("enqueued_ms"),
            started_ms=number("started_ms"),
            finished_ms=number("finished_ms"),
            last_duration_ms=number("last_duration_ms"),
            run_ms=int(fields.get("run_ms", 0)),
            last_error=fields.get("last_error"),
            schedule_id=fields.get("schedule_id"),
        )
