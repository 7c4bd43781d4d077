"""The DLQ API: list with filters and cursors, get, delete, delete many (reference §3)."""

from __future__ import annotations

import pytest
from qstash import AsyncQStash, QStash
from qstash.errors import QStashError

from tests.emulators.qstash_fixtures import Destination, eventually, publish_one


def fail_into_dlq(qstash: QStash, destination: Destination, path: str, count: int, status: int = 500) -> list[str]:
    destination.behave(path, status=status)
    ids = [publish_one(qstash, destination.url(path), body=f"m{i}", retries=0, label=path) for i in range(count)]
    eventually(lambda: qstash.dlq.list(filter={"label": path}).messages, lambda m: len(m) == count)
    return ids


def test_list_pages_with_a_cursor_newest_first(qstash: QStash, destination: Destination, path: str) -> None:
    ids = fail_into_dlq(qstash, destination, path, 3)
    first = qstash.dlq.list(count=2, filter={"label": path})
    assert len(first.messages) == 2
    assert first.cursor is not None
    rest = qstash.dlq.list(count=2, cursor=first.cursor, filter={"label": path})
    assert len(rest.messages) == 1
    assert rest.cursor is None
    listed = [m.message_id for m in first.messages + rest.messages]
    assert sorted(listed) == sorted(ids)
    assert all(m.dlq_id for m in first.messages + rest.messages)


def test_filters_by_status_url_and_queue(qstash: QStash, destination: Destination, path: str) -> None:
    fail_into_dlq(qstash, destination, path, 1, status=500)
    destination.behave(path + "/gone", status=404)
    qstash.message.publish(url=destination.url(path + "/gone"), body="g", retries=0, label=path)
    qstash.message.enqueue(queue=path.strip("/")[:40], url=destination.url(path), body="q", retries=0, label=path)
    eventually(lambda: qstash.dlq.list(filter={"label": path}).messages, lambda m: len(m) == 3)
    by_status = qstash.dlq.list(filter={"label": path, "response_status": 404}).messages
    assert [m.url for m in by_status] == [destination.url(path + "/gone")]
    by_url = qstash.dlq.list(filter={"url": destination.url(path)}).messages
    assert len(by_url) == 2
    by_queue = qstash.dlq.list(filter={"queue": path.strip("/")[:40]}).messages
    assert [m.body for m in by_queue] == ["q"]


def test_get_delete_and_delete_many(qstash: QStash, destination: Destination, path: str) -> None:
    fail_into_dlq(qstash, destination, path, 3)
    entries = qstash.dlq.list(filter={"label": path}).messages
    one = qstash.dlq.get(entries[0].dlq_id)
    assert (one.message_id, one.response_status, one.body) == (entries[0].message_id, 500, entries[0].body)
    qstash.dlq.delete(entries[0].dlq_id)
    with pytest.raises(QStashError, match="404"):
        qstash.dlq.get(entries[0].dlq_id)
    assert qstash.dlq.delete_many([e.dlq_id for e in entries]) == 2
    assert qstash.dlq.list(filter={"label": path}).messages == []


def test_retry_from_the_dlq_publishes_again(qstash: QStash, destination: Destination, path: str) -> None:
    fail_into_dlq(qstash, destination, path, 1)
    [entry] = qstash.dlq.list(filter={"label": path}).messages
    destination.behave(path)
    response = qstash.http.request(path=f"/v2/dlq/retry/{entry.dlq_id}", method="POST")
    assert response["messageId"] != entry.message_id
    assert destination.wait_for(path, 2)[-1].text == entry.body
    assert qstash.dlq.list(filter={"label": path}).messages == []


async def test_async_client_lists_the_dlq(
    qstash: QStash, aqstash: AsyncQStash, destination: Destination, path: str
) -> None:
    ids = fail_into_dlq(qstash, destination, path, 2)
    listing = await aqstash.dlq.list(filter={"label": path})
    assert sorted(m.message_id for m in listing.messages) == sorted(ids)
    assert await aqstash.dlq.delete_many([m.dlq_id for m in listing.messages]) == 2
