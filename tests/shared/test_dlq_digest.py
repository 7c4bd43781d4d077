"""The dead-letter digest against a private Redis (it counts every job's entries), posting to a local HTTP
server that stands in for the alert webhook (tests/emulators/qstash_fixtures.py `Destination`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.jobs.dlq import DeadLetter, DeadLetters
from shared.jobs.dlq.digest import send_digest
from shared.redis import RedisClients
from tests.conftest import Gateway
from tests.emulators.qstash_fixtures import Destination


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(int(time.time() * 1000))


@pytest.fixture
async def letters(private_gateway: Gateway, clock: ManualClock) -> AsyncIterator[DeadLetters]:
    clients = RedisClients(RedisSettings(private_gateway.url, private_gateway.token), timeout_s=10)
    await clients.get().execute(["FLUSHALL"])  # this module's own server: every test starts empty
    yield DeadLetters(redis=clients.get, clock=clock, retention_days=30)
    await clients.aclose()


async def died(letters: DeadLetters, clock: ManualClock, job: str, n: int) -> None:
    for _ in range(n):
        clock.advance(1)
        await letters.record(DeadLetter(message_id=f"msg_{clock.now_ms}", job=job, body=b"{}", attempts=4))


async def test_no_webhook_configured_does_nothing(letters: DeadLetters, clock: ManualClock) -> None:
    await died(letters, clock, "emails.send", 1)
    assert await send_digest(letters, None) is None


async def test_the_digest_posts_counts_by_job_since_the_last_one(
    letters: DeadLetters, clock: ManualClock, destination: Destination, path: str
) -> None:
    webhook = destination.url(path)
    await died(letters, clock, "emails.send", 2)
    await died(letters, clock, "reports.rollup", 1)
    clock.advance(1)
    first = await send_digest(letters, webhook)
    assert first is not None and first.counts == {"emails.send": 2, "reports.rollup": 1}
    posted = destination.wait_for(path)[0]
    body = json.loads(posted.body)
    assert (body["total"], body["jobs"], body["since"]) == (3, {"emails.send": 2, "reports.rollup": 1}, None)
    assert body["text"].startswith("stashkit: 3 dead letters since the start of the retention")

    clock.advance(60)
    quiet = await send_digest(letters, webhook)  # nothing new: nothing sent
    assert quiet is not None and quiet.counts == {}
    await died(letters, clock, "emails.send", 1)
    clock.advance(1)
    later = await send_digest(letters, webhook)
    assert later is not None and later.counts == {"emails.send": 1} and later.since_ms == quiet.until_ms - 1
    posts = destination.wait_for(path, 2)
    assert len(posts) == 2 and json.loads(posts[1].body)["jobs"] == {"emails.send": 1}


async def test_a_webhook_that_fails_loses_nothing(
    letters: DeadLetters, clock: ManualClock, destination: Destination, path: str
) -> None:
    destination.behave(path, fail_times=1, fail_status=502)
    await died(letters, clock, "emails.send", 2)
    clock.advance(1)
    with pytest.raises(httpx.HTTPStatusError):  # the job fails, and QStash retries it
        await send_digest(letters, destination.url(path))
    await died(letters, clock, "emails.send", 1)
    clock.advance(1)
    retried = await send_digest(letters, destination.url(path))
    assert retried is not None and retried.counts == {"emails.send": 3} and retried.since_ms is None
