"""Eager mode: enqueued jobs run in-process, at once, with the same claim, retries and dead letters as the
real path, for users' own tests (`STASHKIT_JOBS_EAGER=1`, or `with eager_jobs(): ...`).

Only the waits are left out: a retry runs immediately (a handler's `Retry(after_s)` is recorded, not
slept), so a test never sleeps. Redis is used as in production (status records, claims, dead letters).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from shared.jobs.publish import settings
from shared.jobs.registry import Job
from shared.jobs.runner import Delivery, JobRunner
from shared.jobs.store import JobStore
from shared.redis import RedisProvider, get_redis


@dataclass(frozen=True, slots=True)
class _Mode:
    enabled: bool
    redis: RedisProvider = get_redis


_eager: ContextVar[_Mode | None] = ContextVar("stashkit_jobs_eager", default=None)


@contextmanager
def eager_jobs(enabled: bool = True, *, redis: RedisProvider = get_redis) -> Iterator[None]:
    """Run jobs enqueued inside this block in-process (or, with `enabled=False`, never), against `redis`
    (default: the environment's)."""
    token = _eager.set(_Mode(enabled, redis))
    try:
        yield
    finally:
        _eager.reset(token)


def is_eager() -> bool:
    chosen = _eager.get()
    return settings().eager if chosen is None else chosen.enabled


async def run_eagerly(job: Job, body: bytes, *, dedup_id: str | None = None) -> str:
    """Run every attempt now; a run whose attempts all fail becomes a dead letter. Returns the message id
    (derived from `dedup_id` when given, so a repeat is acknowledged as a duplicate, as QStash would)."""
    if dedup_id is not None:
        message_id = "eager_" + hashlib.sha256(f"{job.name}\0{dedup_id}".encode()).hexdigest()[:24]
    else:
        message_id = f"eager_{uuid.uuid4().hex}"
    mode = _eager.get()
    redis = mode.redis if mode is not None else get_redis
    runner = JobRunner(JobStore(redis=redis))
    await runner.store.mark_queued(message_id, job.name)
    for attempt in range(1, job.options.retries + 2):
        result = await runner.run(job, Delivery(message_id=message_id, attempt=attempt, body=body))
        if result.outcome in ("succeeded", "duplicate", "skipped"):
            return message_id
        if result.outcome == "permanent":
            break
    from shared.jobs.dlq import DeadLetter, DeadLetters  # only a run that dies needs the store

    letter = DeadLetter(message_id=message_id, job=job.name, body=body, attempts=result.attempt,
                        error=result.error, response_status=_status(result.outcome))  # fmt: skip
    await DeadLetters(redis=redis).record(letter)
    return message_id


def _status(outcome: str) -> int:
    return {"permanent": 489, "retry": 503, "busy": 409}.get(outcome, 500)
