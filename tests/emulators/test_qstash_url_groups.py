"""URL groups: endpoints, fan-out with `Upstash-Topic-Name`, the bare-array reply (reference G15, G23)."""

from __future__ import annotations

import pytest
from qstash import AsyncQStash, QStash, Receiver
from qstash.errors import QStashError

from tests.emulators.qstash_fixtures import Destination


def group_of(path: str) -> str:
    return "g-" + path.strip("/")[-60:]


def test_publish_to_a_group_fans_out_to_every_endpoint(
    qstash: QStash, destination: Destination, path: str, receiver: Receiver
) -> None:
    group = group_of(path)
    urls = [destination.url(path + "/a"), destination.url(path + "/b")]
    qstash.url_group.upsert_endpoints(group, [{"url": urls[0], "name": "first"}, {"url": urls[1]}])
    result = qstash.message.publish(url_group=group, body="fan")
    assert isinstance(result, list)
    assert [r.url for r in result] == urls
    for suffix, url, sent in zip(("/a", "/b"), urls, result, strict=True):
        [got] = destination.wait_for(path + suffix)
        assert got.headers["upstash-topic-name"] == group
        assert got.headers["upstash-message-id"] == sent.message_id
        receiver.verify(signature=got.headers["upstash-signature"], body="fan", url=url)
    message = qstash.message.get(result[0].message_id)
    assert (message.url_group, message.endpoint) == (group, "first")
    qstash.url_group.delete(group)


def test_group_api_round_trip(qstash: QStash, destination: Destination, path: str) -> None:
    group = group_of(path)
    qstash.url_group.upsert_endpoints(
        group, [{"url": destination.url("/1"), "name": "one"}, {"url": destination.url("/2")}]
    )
    fetched = qstash.url_group.get(group)
    assert [(e.url, e.name) for e in fetched.endpoints] == [
        (destination.url("/1"), "one"),
        (destination.url("/2"), None),
    ]
    assert group in [g.name for g in qstash.url_group.list()]
    qstash.url_group.remove_endpoints(group, [{"name": "one"}])
    assert [e.url for e in qstash.url_group.get(group).endpoints] == [destination.url("/2")]
    qstash.url_group.remove_endpoints(group, [{"url": destination.url("/2")}])
    with pytest.raises(QStashError, match="404"):
        qstash.url_group.get(group)  # removing the last endpoint deletes the group
    qstash.url_group.delete(group)  # deleting an unknown group is not an error


def test_enqueue_and_batch_to_a_group(qstash: QStash, destination: Destination, path: str) -> None:
    group = group_of(path)
    qstash.url_group.upsert_endpoints(
        group, [{"url": destination.url(path + "/a")}, {"url": destination.url(path + "/b")}]
    )
    enqueued = qstash.message.enqueue(queue=group, url_group=group, body="q")
    assert isinstance(enqueued, list)
    assert len(enqueued) == 2
    [batched] = qstash.message.batch([{"url_group": group, "body": "b"}])
    assert isinstance(batched, list)
    assert len(batched) == 2
    assert sorted(r.text for r in destination.wait_for(path + "/a", 2)) == ["b", "q"]
    qstash.url_group.delete(group)


async def test_async_client_publishes_to_a_group(aqstash: AsyncQStash, destination: Destination, path: str) -> None:
    group = group_of(path)
    await aqstash.url_group.upsert_endpoints(group, [{"url": destination.url(path)}])
    result = await aqstash.message.publish_json(url_group=group, body={"a": 1})
    assert isinstance(result, list)
    assert len(result) == 1
    await destination.wait_for_async(path)
    await aqstash.url_group.delete(group)
