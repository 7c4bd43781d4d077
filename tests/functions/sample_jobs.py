"""Jobs the jobs-function tests register (STASHKIT_JOB_MODULES=tests.functions.sample_jobs): each records
what it did in Redis under keys the test chose (`payload["key"]`), so a test can count effects.

This module is imported by the functions server (a subprocess), never by the tests themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from shared.jobs import JobContext, PermanentFailure, Retry, job
from shared.redis import get_redis


async def effect(payload: dict[str, Any], ctx: JobContext) -> None:
    """The one side effect a run has: count it, and note which attempt did it."""
    redis = get_redis()
    await redis.hincrby(payload["key"], "effects", 1)
    await redis.hset(payload["key"], "attempt", str(ctx.attempt))


@job("test.record", retries=3, timeout_s=5)
async def record(payload: dict[str, Any], ctx: JobContext) -> None:
    await effect(payload, ctx)


@job("test.fail_then_succeed", retries=3, timeout_s=5)
async def fail_then_succeed(payload: dict[str, Any], ctx: JobContext) -> None:
    if ctx.attempt <= payload["failures"]:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    await effect(payload, ctx)


@job("test.retry_later", retries=3, timeout_s=5)
async def retry_later(payload: dict[str, Any], ctx: JobContext) -> None:
    if ctx.attempt == 1:
        raise Retry(after_s=payload["after_s"], reason="not yet")
    await effect(payload, ctx)


@job("test.permanent", retries=3, timeout_s=5)
async def permanent(payload: dict[str, Any], ctx: JobContext) -> None:
    raise PermanentFailure("this input can never work")


@job("test.slow", retries=0, timeout_s=0.3)
async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
    await asyncio.sleep(payload.get("sleep_s", 5))
    await effect(payload, ctx)


CHAOS_FAILURE_PERCENT = 30  # of attempts: half raise, half run past the timeout


def chaos_roll(job_id: str, attempt: int) -> int:
    """The attempt's fate, 0-99, the same in the job and in the test that predicts the outcome."""
    return int(hashlib.sha256(f"{job_id}:{attempt}".encode()).hexdigest(), 16) % 100


# The test predicts every outcome from the rolls, so an attempt fated to succeed must never be cut by
# its timeout: its effect (one HINCRBY) takes milliseconds, and the timeout leaves seconds of margin for a
# loaded machine (at 1 s, a stall of a second under three parallel suites once cancelled a success after
# its effect: counted twice, as README "Jobs" says any non-idempotent effect can be).
@job("test.chaos", retries=2, timeout_s=3, queue="chaos")
async def chaos(payload: dict[str, Any], ctx: JobContext) -> None:
    roll = chaos_roll(payload["id"], ctx.attempt)
    if roll < CHAOS_FAILURE_PERCENT // 2:
        raise RuntimeError("chaos: raised")
    if roll < CHAOS_FAILURE_PERCENT:
        await asyncio.Event().wait()  # runs until cancelled at timeout_s
    await get_redis().hincrby(payload["key"], payload["id"], 1)


@job("test.singleton", retries=3, timeout_s=5, singleton=True)
async def singleton(payload: dict[str, Any], ctx: JobContext) -> None:
    redis = get_redis()
    if await redis.hincrby(payload["key"], "running", 1) > 1:
        await redis.hset(payload["key"], "overlapped", "yes")
    await asyncio.sleep(payload.get("sleep_s", 0.3))
    await redis.hset(payload["key"], f"token:{ctx.message_id}", str(ctx.fencing_token))
    await redis.hincrby(payload["key"], "running", -1)
    await effect(payload, ctx)


@job("test.singleton_retry", retries=3, timeout_s=5, singleton="retry")
async def singleton_retry(payload: dict[str, Any], ctx: JobContext) -> None:
    await singleton.handler(payload, ctx)


@job("test.webhook_effect", retries=3, timeout_s=5)
async def webhook_effect(payload: dict[str, Any], ctx: JobContext) -> None:
    """A webhook's job (tests/functions/test_webhooks_function.py): the delivery's body names the key."""
    from shared.webhooks.receiver import payload_body

    body = json.loads(payload_body(payload))
    await effect({"key": body["key"]}, ctx)
    await get_redis().hset(body["key"], "delivery_id", payload["delivery_id"])


@job("test.webhook_fails", retries=1, timeout_s=5)
async def webhook_fails(payload: dict[str, Any], ctx: JobContext) -> None:
    raise RuntimeError(f"webhook job failing on purpose ({payload['source']})")
