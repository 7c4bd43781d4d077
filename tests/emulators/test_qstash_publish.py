"""Publish -> delivery: what the destination receives, signatures, batch, and the stored message."""

from __future__ import annotations

import json

import jwt
import pytest
from qstash import AsyncQStash, QStash, Receiver
from qstash.errors import SignatureError
from qstash.message import FlowControl, PublishResponse

from tests.emulators.qstash_fixtures import CURRENT_KEY, NEXT_KEY, Destination, publish_one


def test_delivery_keeps_method_query_body_and_forwarded_headers(
    qstash: QStash, destination: Destination, path: str
) -> None:
    url = destination.url(path) + "?x=1&y=two"
    message_id = publish_one(
        qstash,
        url=url,
        body=b"\x00\x01 raw bytes \xff",
        content_type="application/octet-stream",
        method="PUT",
        headers={"X-Custom": "v", "Upstash-Forward-X-Already-Prefixed": "w"},
    )
    [got] = destination.wait_for(path)
    assert (got.method, got.path, got.body) == ("PUT", path + "?x=1&y=two", b"\x00\x01 raw bytes \xff")
    assert got.headers["x-custom"] == "v"
    assert got.headers["x-already-prefixed"] == "w"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["user-agent"] == "Upstash-QStash"
    assert got.headers["upstash-message-id"] == message_id
    assert got.headers["upstash-retried"] == "0"
    assert got.headers["upstash-caller-ip"] == "127.0.0.1"
    assert "upstash-topic-name" not in got.headers


def test_signature_verifies_with_the_receiver_and_carries_the_documented_claims(
    qstash: QStash, destination: Destination, path: str, receiver: Receiver
) -> None:
    url = destination.url(path) + "?q=1"
    qstash.message.publish_json(url=url, body={"hello": "world"})
    [got] = destination.wait_for(path)
    signature = got.headers["upstash-signature"]
    receiver.verify(signature=signature, body=got.text, url=url)
    claims = jwt.decode(signature, CURRENT_KEY, algorithms=["HS256"], issuer="Upstash")
    assert claims["sub"] == url
    assert claims["iat"] == claims["nbf"]
    assert claims["exp"] == claims["iat"] + 300
    assert isinstance(claims["jti"], str)
    assert "aud" not in claims


def test_signature_fails_for_another_url_a_changed_body_or_unknown_keys(
    qstash: QStash, destination: Destination, path: str, receiver: Receiver
) -> None:
    url = destination.url(path)
    qstash.message.publish(url=url, body="exact body")
    [got] = destination.wait_for(path)
    signature = got.headers["upstash-signature"]
    with pytest.raises(SignatureError):
        receiver.verify(signature=signature, body="exact body", url=url + "/other")
    with pytest.raises(SignatureError):
        receiver.verify(signature=signature, body="exact body!", url=url)
    with pytest.raises(SignatureError):
        Receiver(NEXT_KEY, NEXT_KEY).verify(signature=signature, body="exact body", url=url)


def test_a_receiver_holding_the_signing_key_as_its_next_key_verifies(
    qstash: QStash, destination: Destination, path: str
) -> None:
    url = destination.url(path)
    qstash.message.publish(url=url, body="b")
    [got] = destination.wait_for(path)
    Receiver(NEXT_KEY, CURRENT_KEY).verify(signature=got.headers["upstash-signature"], body="b", url=url)


def test_empty_body_is_delivered_empty(qstash: QStash, destination: Destination, path: str) -> None:
    qstash.message.publish(url=destination.url(path))
    [got] = destination.wait_for(path)
    assert got.body == b""
    assert got.headers["content-length"] == "0"


async def test_async_client_publishes_and_reads_the_message(
    aqstash: AsyncQStash, destination: Destination, path: str
) -> None:
    res = await aqstash.message.publish_json(url=destination.url(path), body={"n": 1}, label="async-label")
    assert isinstance(res, PublishResponse)
    [got] = await destination.wait_for_async(path)
    assert json.loads(got.body) == {"n": 1}
    message = await aqstash.message.get(res.message_id)
    assert message.url == destination.url(path)
    assert message.label == "async-label"


def test_batch_publishes_every_entry_with_its_own_headers(qstash: QStash, destination: Destination, path: str) -> None:
    res = qstash.message.batch_json(
        [
            {"url": destination.url(path + "/a"), "body": {"i": 0}, "headers": {"X-I": "0"}},
            {"url": destination.url(path + "/b"), "body": {"i": 1}, "headers": {"X-I": "1"}, "method": "PATCH"},
        ]
    )
    assert len(res) == 2
    [first] = destination.wait_for(path + "/a")
    [second] = destination.wait_for(path + "/b")
    assert (first.headers["x-i"], first.method, json.loads(first.body)) == ("0", "POST", {"i": 0})
    assert (second.headers["x-i"], second.method, json.loads(second.body)) == ("1", "PATCH", {"i": 1})


def test_message_get_reports_what_was_published(qstash: QStash, destination: Destination, path: str) -> None:
    message_id = publish_one(
        qstash,
        url=destination.url(path),
        body="hello",
        headers={"test-header": "v"},
        retries=2,
        retry_delay="1000 * retried",
        label="lbl",
        flow_control={"key": path, "rate": 4, "period": 2},
        delay=3600,
    )
    message = qstash.message.get(message_id)
    assert (message.body, message.method, message.max_retries, message.label) == ("hello", "POST", 2, "lbl")
    assert message.headers == {"Test-Header": ["v"]}
    assert message.retry_delay_expression == "1000 * retried"
    assert message.not_before == message.created_at + 3_600_000
    assert message.caller_ip == "127.0.0.1"
    assert message.flow_control is not None
    assert (message.flow_control.key, message.flow_control.rate, message.flow_control.period) == (path, 4, 2)
    qstash.message.cancel(message_id)


@pytest.mark.parametrize(
    ("flow_control", "expected"),
    [
        ({"rate": 1, "period": "1h30m3s"}, (None, 1, 5403)),
        ({"parallelism": 3}, (3, None, 1)),
    ],
)
def test_flow_control_fields_are_reported_like_the_real_service(
    qstash: QStash, destination: Destination, path: str, flow_control: FlowControl, expected: tuple[object, ...]
) -> None:
    message_id = publish_one(
        qstash,
        url=destination.url(path),
        body="x",
        delay=3600,
        flow_control={**flow_control, "key": path},
    )
    fc = qstash.message.get(message_id).flow_control
    assert fc is not None
    assert (fc.parallelism, fc.rate, fc.period) == expected
    qstash.message.cancel(message_id)
