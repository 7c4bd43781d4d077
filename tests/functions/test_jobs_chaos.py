"""Chaos: 1,000 jobs, 30% of attempts failing at random (half by raising, half by running past their
timeout), 2 retries each. Every job must end exactly once, succeeded or dead: none lost, none with two
effects, and the dead ones exactly those whose three attempts all failed.

The fate of each attempt is a hash of (job, attempt), so the test knows the expected outcome of every
job in advance; QStash (our emulator, time scale 0.001) retries on its real schedule, scaled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from upstash_redis import Redis

from shared import keys
from tests.conftest import Gateway
from tests.functions.jobs_stack import JobsStack, start_jobs_stack
from tests.functions.sample_jobs import CHAOS_FAILURE_PERCENT, chaos_roll

JOBS = 1_000
ATTEMPTS = 3  # retries=2
PARALLELISM = 20


@pytest.fixture(scope="module")
def stack(gateway: Gateway) -> Iterator[JobsStack]:
    handle = start_jobs_stack(gateway)
    created = handle.qstash.call("POST", "/v2/queues", json={"queueName": "chaos", "parallelism": PARALLELISM})
    created.raise_for_status()
    yield handle
    handle.stop()


def fails(job_id: str, attempt: int) -> bool:
    return chaos_roll(job_id, attempt) < CHAOS_FAILURE_PERCENT


def final_states(redis: Redis, message_ids: list[str]) -> list[str | None]:
    pipeline = redis.pipeline()
    for message_id in message_ids:
        pipeline.hget(keys.job_status(message_id), "state")
    return [state if isinstance(state, str) else None for state in pipeline.exec()]


def test_every_job_ends_exactly_once_and_the_dead_are_exactly_the_thrice_failed(
    stack: JobsStack, gateway: Gateway
) -> None:
    effects_key = f"{{chaos-{uuid.uuid4().hex[:8]}}}:effects"
    ids = [f"job-{i}" for i in range(JOBS)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        message_ids = list(pool.map(lambda i: stack.enqueue("test.chaos", {"id": i, "key": effects_key}), ids))
    by_message = dict(zip(message_ids, ids, strict=True))
    expected_dead = {i for i in ids if all(fails(i, attempt) for attempt in range(1, ATTEMPTS + 1))}
    assert 0 < len(expected_dead) < JOBS // 10  # about 2.7% with these odds

    with Redis(gateway.url, gateway.token) as redis:
        deadline = time.monotonic() + 240
        while True:
            states = final_states(redis, message_ids)
            if all(state in ("succeeded", "dead") for state in states) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        effects = {job_id: int(count) for job_id, count in redis.hgetall(effects_key).items()}

    dead = {by_message[m] for m, state in zip(message_ids, states, strict=True) if state == "dead"}
    succeeded = {by_message[m] for m, state in zip(message_ids, states, strict=True) if state == "succeeded"}
    assert len(dead) + len(succeeded) == JOBS, "a job was lost or never finished"
    assert dead == expected_dead
    assert effects == dict.fromkeys(succeeded, 1), "a job had no effect, or two"
    in_qstash_dlq: set[str] = set()
    cursor = None
    while True:
        params = {"count": 100} | ({"cursor": cursor} if cursor else {})
        page = stack.qstash.call("GET", "/v2/dlq", params=params).json()
        in_qstash_dlq |= {by_message[m["messageId"]] for m in page["messages"] if m["messageId"] in by_message}
        cursor = page.get("cursor")
        if not cursor:
            break
    assert in_qstash_dlq == expected_dead
    assert dead_letters(stack, by_message, len(expected_dead)) == expected_dead


def dead_letters(stack: JobsStack, by_message: dict[str, str], expected: int) -> set[str]:
    """The chaos jobs our dead-letter store holds, once QStash's failure callbacks have all arrived."""
    deadline = time.monotonic() + 60
    while True:
        found: set[str] = set()
        cursor = None
        while True:
            params: dict[str, str | int] = {"job": "test.chaos", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = stack.http.get("/api/dlq/entries", params=params).json()
            found |= {by_message[e["message_id"]] for e in page["entries"] if e["message_id"] in by_message}
            cursor = page["next_cursor"]
            if not cursor:
                break
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.25)
