"""Redrive-once in-process: the claim, the deduplication id and the takeover window, against real Redis
(the single node and the Cluster) and our QStash emulator (its own, so nothing lands in the shared one).

`publisher` publishes each redrive to the emulator with the SDK, as `publish_job` does (its deliveries
go nowhere: the message is delayed by a day). A redriver that "dies" is one that claims an entry and
publishes it but never settles: exactly the state a crash between the two leaves behind.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from qstash.message import PublishResponse

from shared import keys
from shared.clock import ManualClock
from shared.config import QStashSettings
from shared.jobs.dlq import DeadLetter, DeadLetters
from shared.jobs.dlq.redrive import CLAIM_MS, TAKEOVER_WINDOW_MS, PublishJob, dedup_id
from shared.jobs.dlq.scripts import CLAIM
from shared.jobs.registry import JobOptions
from shared.qstash import QStashClients
from shared.redis import RedisClients
from tests.conftest import PUBLIC_URL, Gateway, gateway_clients
from tests.emulators.qstash_fixtures import EmulatorProcess, start_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    server = start_emulator()
    yield server
    server.stop()


@pytest.fixture
async def qstash_clients(emulator: EmulatorProcess) -> AsyncIterator[QStashClients]:
    clients = QStashClients(QStashSettings(emulator.base_url, emulator.token))
    yield clients
    await clients.aclose()


@pytest.fixture
def published(qstash_clients: QStashClients) -> list[str]:
    return []


@pytest.fixture
def publisher(qstash_clients: QStashClients, published: list[str]) -> PublishJob:
    async def publish(name: str, body: bytes, options: JobOptions, *, dedup_id: str | None) -> str:
        response = await qstash_clients.get().message.publish(
            url=f"{PUBLIC_URL}/api/jobs/{name}", body=body, deduplication_id=dedup_id, delay="1d"
        )
        assert isinstance(response, PublishResponse)
        published.append(response.message_id)
        return response.message_id

    return publish


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=10) as clients:
        yield clients


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(int(time.time() * 1000))  # Redis expires keys by its own clock: start in step


async def dead(letters: DeadLetters) -> str:
    """A dead letter of a registered job (the built-in digest), under a message id of its own."""
    return await letters.record(DeadLetter(message_id=f"msg_{uuid.uuid4().hex}", job="stashkit.dlq_digest",
                                           body=b"null", attempts=4))  # fmt: skip


async def test_ten_concurrent_redrives_publish_one_message(
    redis: RedisClients, publisher: PublishJob, published: list[str]
) -> None:
    letters = DeadLetters(redis=redis.get, publish=publisher)
    id_ = await dead(letters)
    results = await asyncio.gather(*(letters.redrive_report([id_]) for _ in range(10)))
    assert len(published) == 1
    assert [r.message_ids for r in results if r.message_ids] == [published]
    assert {s.reason for r in results for s in r.skipped} <= {"already redriven", "busy"}
    entry = await letters.get(id_)
    assert entry is not None and (entry.status, entry.redriven_as) == ("redriven", published[0])
    assert await letters.redrive([id_]) == []


async def die_after_publishing(letters: DeadLetters, id_: str, publisher: PublishJob) -> str:
    args = [letters.now_arg(), keys.DLQ_PREFIX, "dead-owner", CLAIM_MS, TAKEOVER_WINDOW_MS, id_]
    claim = await CLAIM.run(letters.redis(), [keys.dlq_index()], args)
    assert isinstance(claim, list) and claim[1][1] == "claimed"
    return await publisher("stashkit.dlq_digest", b"null", JobOptions(), dedup_id=dedup_id(id_))


async def test_a_dead_redrivers_entry_is_taken_over_and_qstash_keeps_one_message(
    redis: RedisClients, clock: ManualClock, publisher: PublishJob, published: list[str]
) -> None:
    letters = DeadLetters(redis=redis.get, clock=clock, publish=publisher)
    id_ = await dead(letters)
    first = await die_after_publishing(letters, id_, publisher)
    report = await letters.redrive_report([id_])  # its claim still runs
    assert report.message_ids == [] and [s.reason for s in report.skipped] == ["busy"]
    clock.advance(CLAIM_MS / 1000 + 1)
    assert await letters.redrive([id_]) == [first]  # taken over: the same deduplication id, the same message
    assert published == [first, first]
    entry = await letters.get(id_)
    assert entry is not None and (entry.status, entry.redriven_as) == ("redriven", first)


async def test_past_the_deduplication_window_a_lapsed_claim_is_stuck_not_republished(
    redis: RedisClients, clock: ManualClock, publisher: PublishJob, published: list[str]
) -> None:
    letters = DeadLetters(redis=redis.get, clock=clock, publish=publisher)
    id_ = await dead(letters)
    await die_after_publishing(letters, id_, publisher)
    clock.advance(TAKEOVER_WINDOW_MS / 1000)
    report = await letters.redrive_report([id_])
    assert report.message_ids == [] and [s.reason for s in report.skipped] == ["stuck"]
    assert len(published) == 1
    entry = await letters.get(id_)
    assert entry is not None and entry.status == "redriving"


async def test_an_unknown_job_or_entry_is_skipped_and_the_claim_undone(
    redis: RedisClients, publisher: PublishJob, published: list[str]
) -> None:
    letters = DeadLetters(redis=redis.get, publish=publisher)
    id_ = await letters.record(DeadLetter(message_id=f"msg_{uuid.uuid4().hex}", job="gone.job", body=b"{}",
                                          attempts=1))  # fmt: skip
    report = await letters.redrive_report([id_, "dl_" + "0" * 24])
    assert [(s.id, s.reason) for s in report.skipped] == [(id_, "no job named 'gone.job'"), ("dl_" + "0" * 24,
                                                                                            "missing")]  # fmt: skip
    entry = await letters.get(id_)
    assert entry is not None and entry.status == "dead" and published == []
