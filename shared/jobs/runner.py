"""Running one delivery of a job: claim it, run the handler under its timeout, record how it ended.

The outcome tells the caller (functions/jobs.py, or eager mode) what to answer QStash:

    succeeded   the handler returned                                  200
    duplicate   the message already ran (or was skipped, or died)      200, nothing run
    skipped     a singleton job whose previous run still holds the lock 200 (singleton="skip")
    busy        another delivery is running this message right now     409 + Retry-After (QStash retries)
    retry       the handler raised Retry(after_s), or a singleton run   503 + Retry-After
                overlapped with singleton="retry"
    failed      the handler raised                                    500 (QStash retries, then DLQ)
    timeout     the handler ran past timeout_s and was cancelled       500
    permanent   the handler raised PermanentFailure, or the payload    489 + Upstash-NonRetryable-Error
                is not JSON

Nothing runs after the answer: no background task (a frozen Lambda would never finish it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Literal

import msgspec

from shared.errors import PermanentFailure, RedisUnavailable, Retry
from shared.jobs.registry import Job, JobContext
from shared.jobs.store import CLAIM_GRACE_MS, FinalState, JobStore
from shared.locks.lock import FencedLock, Lease

Outcome = Literal["succeeded", "duplicate", "skipped", "busy", "retry", "failed", "timeout", "permanent"]
log = logging.getLogger("stashkit.jobs")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    message_id: str
    attempt: int  # 1 for the first delivery (QStash's Upstash-Retried + 1)
    body: bytes
    schedule_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    outcome: Outcome
    attempt: int
    retry_after_s: float = 0.0  # busy and retry: when to come back
    error: str | None = None
    fencing_token: int | None = None


class JobRunner:
    """Runs deliveries of registered jobs against one store (injectable for tests)."""

    def __init__(self, store: JobStore | None = None) -> None:
        self.store = store or JobStore()

    async def run(self, job: Job, delivery: Delivery) -> RunResult:
        try:
            payload = msgspec.json.decode(delivery.body) if delivery.body.strip() else None
        except msgspec.DecodeError as exc:  # no retry can fix a body that is not JSON
            return RunResult(outcome="permanent", attempt=delivery.attempt, error=f"the payload is not JSON: {exc}")
        owner = uuid.uuid4().hex
        timeout_ms = math.ceil(job.options.timeout_s * 1000)
        claim = await self.store.claim(delivery.message_id, owner, job.name, timeout_ms, delivery.schedule_id)
        if claim.outcome == "done":
            return RunResult(outcome="duplicate", attempt=delivery.attempt)
        if claim.outcome == "busy":
            wait_s = max(1.0, (claim.busy_until_ms - claim.now_ms) / 1000)
            return RunResult(outcome="busy", attempt=delivery.attempt, retry_after_s=wait_s)
        attempt = max(delivery.attempt, claim.attempts)
        if job.options.singleton is None:
            result = await self._run_handler(job, delivery, payload, attempt, None)
            await self.store.finish(delivery.message_id, owner, _final_state(result, job), result.error)
            return result
        # Singleton: the job's lock, with a fencing token, for the run (shared/locks). Held past the run
        # until the outcome is recorded, so no overlapping run can start between the two.
        lock = FencedLock(f"job:{job.name}", timeout_ms + CLAIM_GRACE_MS, redis=self.store.redis)
        lease = await lock.acquire()
        try:
            if lease is None:
                result = _overlapping(job, attempt)
            else:
                result = await self._run_handler(job, delivery, payload, attempt, lease.token)
            await self.store.finish(delivery.message_id, owner, _final_state(result, job), result.error)
        finally:
            if lease is not None:
                await _release(lock, lease)
        return result

    async def _run_handler(
        self, job: Job, delivery: Delivery, payload: object, attempt: int, fencing_token: int | None
    ) -> RunResult:
        ctx = JobContext(
            job=job.name,
            message_id=delivery.message_id,
            attempt=attempt,
            max_retries=job.options.retries,
            schedule_id=delivery.schedule_id,
            fencing_token=fencing_token,
            deadline=time.monotonic() + job.options.timeout_s,
        )
        try:
            async with asyncio.timeout(job.options.timeout_s):
                await job.handler(payload, ctx)
        except TimeoutError:
            return RunResult(outcome="timeout", attempt=attempt, error=f"timed out after {job.options.timeout_s} s")
        except Retry as retry:
            return RunResult(outcome="retry", attempt=attempt, retry_after_s=retry.after_s, error=str(retry))
        except PermanentFailure as exc:
            return RunResult(outcome="permanent", attempt=attempt, error=_describe(exc))
        except Exception as exc:  # the handler's bug or its dependency's failure: QStash retries it
            _log_failure(job, delivery, attempt, exc)
            return RunResult(outcome="failed", attempt=attempt, error=_describe(exc))
        return RunResult(outcome="succeeded", attempt=attempt, fencing_token=fencing_token)


def _overlapping(job: Job, attempt: int) -> RunResult:
    """A singleton run that found the lock held: acknowledged as skipped, or asked back (`"retry"`)
    once the holder's run must have ended (its timeout)."""
    if job.options.singleton == "skip":
        return RunResult(outcome="skipped", attempt=attempt, error="another run of this singleton job is running")
    return RunResult(outcome="retry", attempt=attempt, retry_after_s=job.options.timeout_s,
                     error="another run of this singleton job is running")  # fmt: skip


async def _release(lock: FencedLock, lease: Lease) -> None:
    """Release after the outcome is recorded; if Redis is down the lease expires by itself."""
    try:
        await lock.release(lease)
    except RedisUnavailable as exc:
        log.warning(json.dumps({"event": "job.lock_kept", "lock": lock.name, "error": str(exc)}))


def _final_state(result: RunResult, job: Job) -> FinalState:
    if result.outcome == "succeeded":
        return "succeeded"
    if result.outcome == "skipped":
        return "skipped"
    if result.outcome == "permanent" or result.attempt > job.options.retries:
        return "dead"
    return "retrying" if result.outcome == "retry" else "failed"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _log_failure(job: Job, delivery: Delivery, attempt: int, exc: Exception) -> None:
    line = {
        "event": "job.failed",
        "job": job.name,
        "message_id": delivery.message_id,
        "attempt": attempt,
        "max_retries": job.options.retries,
        "error": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    log.error(json.dumps(line))
