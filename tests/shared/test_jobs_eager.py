"""Eager mode (shared/jobs/eager.py), as a user's own tests would use it: `enqueue` runs the handler at
once in-process, through the real claim, status records and dead letters (the gateway and Redis), with
the retries but without the waits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.config import RedisSettings
from shared.jobs import JobContext, PermanentFailure, Retry, job
from shared.jobs.dlq import DeadLetters
from shared.jobs.dlq.model import entry_id
from shared.jobs.eager import eager_jobs
from shared.jobs.store import JobStore
from shared.redis import RedisClients
from tests.conftest import Gateway

calls: list[tuple[str, int]] = []


@job("eager.greet", retries=2, timeout_s=5)
async def greet(payload: dict[str, Any], ctx: JobContext) -> None:
    calls.append((payload["id"], ctx.attempt))


@job("eager.flaky", retries=2, timeout_s=5)
async def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
    calls.append((payload["id"], ctx.attempt))
    if ctx.attempt <= payload["failures"]:
        raise RuntimeError(f"attempt {ctx.attempt} fails")


@job("eager.later", retries=2, timeout_s=5)
async def later(payload: dict[str, Any], ctx: JobContext) -> None:
    calls.append((payload["id"], ctx.attempt))
    if ctx.attempt == 1:
        raise Retry(after_s=3600)  # recorded, not slept


@job("eager.never", retries=2, timeout_s=5)
async def never(payload: dict[str, Any], ctx: JobContext) -> None:
    calls.append((payload["id"], ctx.attempt))
    raise PermanentFailure("bad input")


@pytest.fixture
async def redis(gateway: Gateway) -> AsyncIterator[RedisClients]:
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=5)
    with eager_jobs(redis=clients.get):
        yield clients
    await clients.aclose()


def attempts_of(run_id: str) -> list[int]:
    return [attempt for id_, attempt in calls if id_ == run_id]


async def state(redis: RedisClients, message_id: str) -> str | None:
    record = await JobStore(redis=redis.get).status(message_id)
    return record.state if record else None


async def test_an_eager_job_runs_at_once_and_once(redis: RedisClients) -> None:
    run_id = uuid.uuid4().hex
    message_id = await greet.enqueue({"id": run_id})
    assert attempts_of(run_id) == [1]
    assert await state(redis, message_id) == "succeeded"


async def test_retries_run_at_once_and_a_run_that_never_succeeds_is_a_dead_letter(redis: RedisClients) -> None:
    recovers, dies = uuid.uuid4().hex, uuid.uuid4().hex
    assert await state(redis, await flaky.enqueue({"id": recovers, "failures": 2})) == "succeeded"
    assert attempts_of(recovers) == [1, 2, 3]
    message_id = await flaky.enqueue({"id": dies, "failures": 3})
    assert attempts_of(dies) == [1, 2, 3]
    assert await state(redis, message_id) == "dead"
    entry = await DeadLetters(redis=redis.get).get(entry_id(message_id))
    assert entry is not None
    assert (entry.letter.job, entry.letter.attempts, entry.status) == ("eager.flaky", 3, "dead")
    assert "attempt 3 fails" in (entry.letter.error or "")


async def test_retry_later_and_permanent_failure(redis: RedisClients) -> None:
    run_id = uuid.uuid4().hex
    assert await state(redis, await later.enqueue({"id": run_id})) == "succeeded"
    assert attempts_of(run_id) == [1, 2]
    never_id = uuid.uuid4().hex
    message_id = await never.enqueue({"id": never_id})
    assert attempts_of(never_id) == [1]  # no retry
    entry = await DeadLetters(redis=redis.get).get(entry_id(message_id))
    assert entry is not None and entry.letter.response_status == 489


async def test_a_repeated_dedup_id_runs_once(redis: RedisClients) -> None:
    run_id, dedup = uuid.uuid4().hex, uuid.uuid4().hex
    first = await greet.enqueue({"id": run_id}, dedup_id=dedup)
    again = await greet.enqueue({"id": run_id}, dedup_id=dedup)
    assert first == again
    assert attempts_of(run_id) == [1]
