"""The dead-letter store against the real gateway and Redis, on a single node and on the Cluster.

The shared servers hold other tests' dead letters under the same `{dlq}` keys, so these tests give every
entry a job name of their own and filter by it. Tests that move a clock, or that read or purge every
entry, use a private redis-server and gateway (`private_letters`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import keys
from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.errors import InvalidInput
from shared.jobs.dlq import DeadLetter, DeadLetters
from shared.jobs.dlq.model import entry_id
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients

DAY_S = 86_400


def job_name() -> str:
    return f"t.{uuid.uuid4().hex[:12]}"


def letter(job: str, n: int = 0, **fields: object) -> DeadLetter:
    values: dict[str, object] = {"message_id": f"msg_{job}_{n}", "job": job, "body": b'{"n": %d}' % n, "attempts": 4}
    return DeadLetter(**(values | fields))  # type: ignore[arg-type]


async def call(clients: RedisClients, *command: object) -> Any:
    return await clients.get().execute(list(command))


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=10) as clients:
        yield clients


@pytest.fixture
def letters(redis: RedisClients) -> DeadLetters:
    return DeadLetters(redis=redis.get, retention_days=30)


@pytest.fixture
async def private_redis(private_gateway: Gateway) -> AsyncIterator[RedisClients]:
    clients = RedisClients(RedisSettings(private_gateway.url, private_gateway.token), timeout_s=10)
    await clients.get().execute(["FLUSHALL"])  # this module's own server: every test starts empty
    yield clients
    await clients.aclose()


@pytest.fixture
def clock() -> ManualClock:
    """Starts at the real time: Redis expires keys by its own clock, so the two must agree at first."""
    return ManualClock(_now_ms())


@pytest.fixture
def private_letters(private_redis: RedisClients, clock: ManualClock) -> DeadLetters:
    return DeadLetters(redis=private_redis.get, clock=clock, retention_days=30)


async def test_record_then_get_keeps_every_field(letters: DeadLetters) -> None:
    job = job_name()
    original = letter(job, error="ValueError: boom", response_status=500, response_body='{"detail": "x"}',
                      headers={"X-Trace": ["1"]}, dlq_id="1725323658779-0")  # fmt: skip
    id_ = await letters.record(original)
    entry = await letters.get(id_)
    assert entry is not None
    assert (entry.id, entry.status, entry.redriven_as) == (id_, "dead", None)
    assert entry.letter.failed_at_ms is not None and entry.letter.failed_at_ms > 1_700_000_000_000  # Redis time
    assert entry.letter == dataclasses.replace(original, failed_at_ms=entry.letter.failed_at_ms)


async def test_a_body_that_is_not_utf8_survives(letters: DeadLetters) -> None:
    id_ = await letters.record(letter(job_name(), body=b"\xff\x00\xfe"))
    entry = await letters.get(id_)
    assert entry is not None and entry.letter.body == b"\xff\x00\xfe"


async def test_duplicates_of_one_message_collapse_into_one_entry(letters: DeadLetters) -> None:
    job = job_name()
    first = await letters.record(letter(job, attempts=2, error="first"))
    again = await letters.record(letter(job, attempts=4, dlq_id="dlq-1", error="later"))
    concurrent = await asyncio.gather(*(letters.record(letter(job)) for _ in range(20)))
    assert {first, again, *concurrent} == {entry_id(f"msg_{job}_0")}
    page = await letters.list(job=job)
    assert [e.id for e in page.entries] == [first]
    entry = page.entries[0]
    assert entry.letter.attempts == 4  # the highest count reported
    assert entry.letter.dlq_id == "dlq-1"  # a gap the first report left is filled
    assert entry.letter.error == "first"  # what the first report said stays


async def test_record_is_one_round_trip(letters: DeadLetters, any_gateway: Gateway) -> None:
    await letters.record(letter(job_name(), n=1))  # loads the script
    before = any_gateway.requests()
    await letters.record(letter(job_name(), n=2))
    assert any_gateway.requests() - before == 1


async def test_list_filters_by_job_and_status_and_pages_with_cursors(letters: DeadLetters) -> None:
    job, other = job_name(), job_name()
    ids = [await letters.record(letter(job, n)) for n in range(7)]
    await letters.record(letter(other, 99))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await letters.list(job=job, limit=3, cursor=cursor)
        assert len(page.entries) == 3 or page.next_cursor is None  # full pages until the last
        seen += [e.id for e in page.entries]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == 7  # each once, none of the other job's
    newest_first = [e.letter.failed_at_ms or 0 for e in (await letters.list(job=job, limit=7)).entries]
    assert newest_first == sorted(newest_first, reverse=True)
    assert (await letters.list(job=job, status="redriven")).entries == []
    assert len((await letters.list(job=job, status="dead", limit=10)).entries) == 7


async def test_list_by_time_window(letters: DeadLetters) -> None:
    job = job_name()
    base = _now_ms() - DAY_S * 1000
    for n, at in enumerate((1_000, 2_000, 3_000)):
        await letters.record(letter(job, n, failed_at_ms=base + at))
    page = await letters.list(job=job, since=base + 2_000, until=base + 3_000)
    assert [e.letter.message_id for e in page.entries] == [f"msg_{job}_1"]  # since inclusive, until exclusive


def _now_ms() -> int:
    return int(time.time() * 1000)


async def test_a_page_is_full_when_matches_are_scattered(private_letters: DeadLetters, clock: ManualClock) -> None:
    """A status filter skips the entries that do not match inside the script, so a page never comes back
    short while matching entries remain (here 1 in 10 is still dead)."""
    job = job_name()
    for n in range(300):
        clock.advance(1)
        await private_letters.record(letter(job, n))
    redriven = [e.id for e in (await private_letters.list(job=job, limit=100)).entries]
    await _mark_redriven(private_letters, [i for n, i in enumerate(redriven) if n % 10])
    page = await private_letters.list(status="dead", limit=20)
    assert len(page.entries) == 20 and page.next_cursor is not None
    assert all(e.status == "dead" for e in page.entries)


async def _mark_redriven(letters: DeadLetters, ids: list[str]) -> None:
    for id_ in ids:
        await letters.redis().execute(["HSET", keys.dlq_entry(id_), "status", "redriven", "redriven_as", "msg_x"])


async def test_bad_cursor_status_and_limit_name_the_field(letters: DeadLetters) -> None:
    for kwargs, field in (({"cursor": "nope"}, "cursor"), ({"limit": 0}, "limit"), ({"since": -1}, "since"),
                          ({"status": "gone"}, "status")):  # fmt: skip
        with pytest.raises(InvalidInput) as caught:
            await letters.list(**kwargs)
        assert caught.value.field == field


async def test_delete_forgets_the_entry_and_a_late_duplicate_does_not_bring_it_back(letters: DeadLetters) -> None:
    job = job_name()
    id_ = await letters.record(letter(job))
    assert await letters.delete(id_) is True
    assert await letters.get(id_) is None
    assert await letters.delete(id_) is False
    assert await letters.record_outcome(letter(job)) == (id_, "deleted")  # QStash retried the callback
    assert await letters.get(id_) is None
    assert (await letters.list(job=job)).entries == []


async def test_purge_deletes_what_matches_and_counts_it(letters: DeadLetters) -> None:
    job, kept = job_name(), job_name()
    for n in range(12):
        await letters.record(letter(job, n))
    await letters.record(letter(kept))
    dead = (await letters.list(job=job, limit=12)).entries
    await _mark_redriven(letters, [e.id for e in dead[:5]])
    assert await letters.purge(job=job, status="redriven") == 5
    assert await letters.purge(job=job) == 7
    assert (await letters.list(job=job)).entries == []
    assert len((await letters.list(job=kept)).entries) == 1


async def test_purge_everything_in_batches(private_letters: DeadLetters, clock: ManualClock) -> None:
    for n in range(1_203):  # more than two script batches
        clock.advance(0.001)
        await private_letters.record(letter("bulk", n))
    assert await private_letters.purge() == 1_203
    assert (await private_letters.list()).entries == []


async def test_retention_hides_old_entries_and_writes_prune_the_index(
    private_letters: DeadLetters, private_redis: RedisClients, clock: ManualClock
) -> None:
    old = await private_letters.record(letter("old.job"))
    ttl_ms = await call(private_redis, "PTTL", keys.dlq_entry(old))
    assert 29 * DAY_S * 1000 < ttl_ms <= 30 * DAY_S * 1000  # expires failed_at + 30 days (Redis time)
    clock.advance(31 * DAY_S)
    assert (await private_letters.list()).entries == []  # past its retention: never listed
    await private_letters.record(letter("new.job"))
    index = await call(private_redis, "ZRANGE", keys.dlq_index(), 0, -1)
    assert old not in index  # pruned by score on the write
    assert await private_letters.record_outcome(letter("old.job", n=1, failed_at_ms=_now_ms())) == (
        entry_id("msg_old.job_1"),
        "expired",
    )


async def test_every_dlq_key_has_a_ttl(private_letters: DeadLetters, private_redis: RedisClients) -> None:
    id_ = await private_letters.record(letter("ttl.job"))
    await private_letters.delete(await private_letters.record(letter("ttl.job", 1)))
    found = await call(private_redis, "KEYS", "stashkit:{dlq}:*")
    assert keys.dlq_entry(id_) in found and keys.dlq_index() in found
    for key in found:
        assert await call(private_redis, "PTTL", key) > 0, key
