"""The effect-once claim and the status record (shared/jobs/store.py) against the real gateway and Redis,
on a single node and on the Cluster, with a clock the test moves (so a crashed run's claim can expire
without waiting)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from shared.clock import ManualClock
from shared.jobs.store import CLAIM_GRACE_MS, JobStore
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients

START_MS = 1_800_000_000_000


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=5) as clients:
        yield clients


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def store(redis: RedisClients, clock: ManualClock) -> JobStore:
    return JobStore(redis=redis.get, clock=clock)


def message() -> str:
    return f"msg_{uuid.uuid4().hex}"


async def test_a_succeeded_message_is_never_claimed_again(store: JobStore) -> None:
    message_id = message()
    await store.mark_queued(message_id, "emails.send", enqueued_ms=START_MS)
    first = await store.claim(message_id, "a", "emails.send", 30_000, None)
    assert (first.outcome, first.attempts) == ("claimed", 1)
    assert await store.finish(message_id, "a", "succeeded")
    again = await store.claim(message_id, "b", "emails.send", 30_000, None)
    assert (again.outcome, again.state) == ("done", "succeeded")
    record = await store.status(message_id)
    assert record is not None
    assert (record.state, record.attempts, record.job, record.enqueued_ms) == ("succeeded", 1, "emails.send", START_MS)


async def test_only_one_of_many_concurrent_deliveries_claims(store: JobStore) -> None:
    message_id = message()
    claims = await asyncio.gather(*(store.claim(message_id, f"d{i}", "j", 30_000, None) for i in range(20)))
    assert sorted(c.outcome for c in claims) == ["busy"] * 19 + ["claimed"]
    busy = next(c for c in claims if c.outcome == "busy")
    assert busy.busy_until_ms == START_MS + 30_000 + CLAIM_GRACE_MS


async def test_a_crashed_runs_claim_expires_and_a_retry_runs(store: JobStore, clock: ManualClock) -> None:
    message_id = message()
    await store.claim(message_id, "crashed", "j", 1_000, None)  # never finishes
    assert (await store.claim(message_id, "early", "j", 1_000, None)).outcome == "busy"
    clock.advance((1_000 + CLAIM_GRACE_MS) / 1000 + 0.001)
    retry = await store.claim(message_id, "retry", "j", 1_000, None)
    assert (retry.outcome, retry.attempts) == ("claimed", 2)
    assert not await store.finish(message_id, "crashed", "succeeded")  # the old owner records nothing
    assert await store.finish(message_id, "retry", "succeeded")


async def test_a_failed_attempt_releases_the_claim_and_keeps_its_error(store: JobStore, clock: ManualClock) -> None:
    message_id = message()
    await store.claim(message_id, "a", "j", 30_000, "nightly")
    clock.advance(2)
    assert await store.finish(message_id, "a", "failed", "RuntimeError: boom")
    retry = await store.claim(message_id, "b", "j", 30_000, "nightly")  # at once: no wait for the claim
    assert (retry.outcome, retry.attempts) == ("claimed", 2)
    clock.advance(1)
    await store.finish(message_id, "b", "succeeded")
    record = await store.status(message_id)
    assert record is not None
    assert (record.last_error, record.schedule_id, record.run_ms, record.last_duration_ms) == (
        "RuntimeError: boom", "nightly", 3_000, 1_000
    )  # fmt: skip


async def test_mark_queued_never_overwrites_a_delivery_that_got_there_first(store: JobStore) -> None:
    message_id = message()
    await store.claim(message_id, "fast", "j", 30_000, None)
    await store.mark_queued(message_id, "j")
    record = await store.status(message_id)
    assert record is not None and record.state == "running"
    assert await store.status(message()) is None
