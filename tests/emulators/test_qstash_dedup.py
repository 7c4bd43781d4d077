"""Deduplication by id and by content: a duplicate gets 202, the original id and `deduplicated`."""

from __future__ import annotations

import time

from qstash import QStash
from qstash.message import PublishResponse

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess


def test_same_deduplication_id_is_accepted_once(qstash: QStash, destination: Destination, path: str) -> None:
    first = qstash.message.publish(url=destination.url(path), body="a", deduplication_id=path)
    second = qstash.message.publish(url=destination.url(path), body="b", deduplication_id=path)
    assert isinstance(first, PublishResponse)
    assert isinstance(second, PublishResponse)
    assert (first.deduplicated, second.deduplicated) == (False, True)
    assert second.message_id == first.message_id
    destination.wait_for(path)
    time.sleep(0.03)
    assert [r.text for r in destination.received(path)] == ["a"]


def test_a_duplicate_answers_202_with_the_original_id(
    qstash_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    headers = {"Upstash-Deduplication-Id": path + "-raw"}
    first = qstash_server.call("POST", "/v2/publish/" + destination.url(path), headers=headers, content=b"x")
    second = qstash_server.call("POST", "/v2/publish/" + destination.url(path), headers=headers, content=b"x")
    assert (first.status_code, second.status_code) == (200, 202)
    assert second.json() == {"messageId": first.json()["messageId"], "url": destination.url(path), "deduplicated": True}


def test_content_based_deduplication_compares_body_and_forwarded_headers(
    qstash: QStash, destination: Destination, path: str
) -> None:
    url = destination.url(path)

    def publish(body: str, header: str = "1") -> PublishResponse:
        result = qstash.message.publish(url=url, body=body, headers={"X-H": header}, content_based_deduplication=True)
        assert isinstance(result, PublishResponse)
        return result

    original = publish("same")
    assert publish("same").message_id == original.message_id
    assert publish("same").deduplicated
    assert not publish("other").deduplicated
    assert not publish("same", header="2").deduplicated
    destination.wait_for(path, 3)
    time.sleep(0.03)
    assert len(destination.received(path)) == 3


def test_content_deduplication_is_off_when_false(qstash: QStash, destination: Destination, path: str) -> None:
    for _ in range(2):
        result = qstash.message.publish(url=destination.url(path), body="b", content_based_deduplication=False)
        assert isinstance(result, PublishResponse)
        assert not result.deduplicated
    destination.wait_for(path, 2)


def test_a_duplicate_url_group_publish_returns_every_original_id(
    qstash: QStash, destination: Destination, path: str
) -> None:
    group = path.strip("/")
    qstash.url_group.upsert_endpoints(
        group, [{"url": destination.url(path + "/1")}, {"url": destination.url(path + "/2")}]
    )
    first = qstash.message.publish(url_group=group, body="g", deduplication_id=path)
    again = qstash.message.publish(url_group=group, body="g", deduplication_id=path)
    assert isinstance(first, list)
    assert isinstance(again, list)
    assert [r.message_id for r in again] == [r.message_id for r in first]
    assert all(r.deduplicated for r in again)
    assert not any(r.deduplicated for r in first)
    qstash.url_group.delete(group)
