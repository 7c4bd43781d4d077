"""Queues: FIFO, parallelism never exceeded, pause/resume, and the queue API (reference §3)."""

from __future__ import annotations

import time

import pytest
from qstash import AsyncQStash, QStash
from qstash.errors import QStashError

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess


def queue_name(path: str) -> str:
    return path.strip("/")[-60:]


def test_a_queue_never_runs_more_than_its_parallelism(qstash: QStash, destination: Destination, path: str) -> None:
    name = queue_name(path)
    qstash.queue.upsert(name, parallelism=3)
    behaviour = destination.behave(path, delay_s=0.04)
    for i in range(12):
        qstash.message.enqueue(queue=name, url=destination.url(path), body=str(i))
    destination.wait_for(path, 12)
    assert behaviour.max_active == 3


def test_parallelism_one_delivers_in_order_and_waits_for_retries(
    qstash: QStash, destination: Destination, path: str
) -> None:
    name = queue_name(path)
    destination.behave(path, fail_times=1)
    for i in range(5):
        qstash.message.enqueue(queue=name, url=destination.url(path), body=str(i), retries=2)
    received = destination.wait_for(path, 6)
    # The first message fails once; the next one waits until its retry succeeded (queues.mdx).
    assert [r.text for r in received] == ["0", "0", "1", "2", "3", "4"]


def test_a_paused_queue_holds_messages_until_resumed(qstash: QStash, destination: Destination, path: str) -> None:
    name = queue_name(path)
    qstash.queue.upsert(name, parallelism=2, paused=True)
    for i in range(3):
        qstash.message.enqueue(queue=name, url=destination.url(path), body=str(i))
    time.sleep(0.1)
    assert destination.received(path) == []
    queue = qstash.queue.get(name)
    assert (queue.paused, queue.lag, queue.parallelism) == (True, 3, 2)
    qstash.queue.resume(name)
    destination.wait_for(path, 3)
    qstash.queue.pause(name)
    assert qstash.queue.get(name).paused


def test_queue_api_round_trip(qstash: QStash, path: str) -> None:
    name = queue_name(path)
    qstash.queue.upsert(name, parallelism=4)
    queue = qstash.queue.get(name)
    assert (queue.name, queue.parallelism, queue.paused, queue.lag) == (name, 4, False, 0)
    assert queue.created_at <= queue.updated_at
    assert name in [q.name for q in qstash.queue.list()]
    qstash.queue.delete(name)
    with pytest.raises(QStashError, match="404"):
        qstash.queue.get(name)


def test_enqueue_creates_the_queue_and_reports_it_on_the_message(
    qstash: QStash, destination: Destination, path: str
) -> None:
    name = queue_name(path)
    result = qstash.message.enqueue_json(queue=name, url=destination.url(path), body={"q": 1})
    assert not isinstance(result, list)
    destination.wait_for(path)
    assert qstash.message.get(result.message_id).queue == name
    assert qstash.queue.get(name).parallelism == 1


def test_deleting_a_queue_cancels_its_waiting_messages(
    qstash: QStash, qstash_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    name = queue_name(path)
    qstash.queue.upsert(name, paused=True)
    result = qstash.message.enqueue(queue=name, url=destination.url(path), body="x")
    assert not isinstance(result, list)
    qstash.queue.delete(name)
    time.sleep(0.05)
    assert destination.received(path) == []
    assert qstash_server.call("DELETE", f"/v2/messages/{result.message_id}").status_code == 404


async def test_async_client_manages_queues(aqstash: AsyncQStash, destination: Destination, path: str) -> None:
    name = queue_name(path)
    await aqstash.queue.upsert(name, parallelism=2)
    await aqstash.message.enqueue(queue=name, url=destination.url(path), body="a")
    await destination.wait_for_async(path)
    assert (await aqstash.queue.get(name)).parallelism == 2
    await aqstash.queue.delete(name)
