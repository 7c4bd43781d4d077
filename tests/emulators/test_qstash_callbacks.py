"""Callbacks after every attempt and the failure callback once retries run out (reference §5.5)."""

from __future__ import annotations

import base64
import json
import time

from qstash import QStash, Receiver
from qstash.log import LogFilter, LogState

from tests.emulators.qstash_fixtures import Destination, eventually, publish_one


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_callback_follows_every_attempt_with_the_response(
    qstash: QStash, destination: Destination, path: str, receiver: Receiver
) -> None:
    destination.behave(path, fail_times=1, fail_body=b"try again", body=b"done")
    callback = destination.url(path + "/cb")
    message_id = publish_one(
        qstash, url=destination.url(path), body="payload", headers={"X-Src": "1"}, retries=1, callback=callback
    )
    first, second = destination.wait_for(path + "/cb", 2)
    bodies = [json.loads(c.body) for c in (first, second)]
    bodies.sort(key=lambda b: b["retried"])
    assert [(b["status"], b["retried"], b["body"]) for b in bodies] == [
        (500, 0, b64("try again")),
        (200, 1, b64("done")),
    ]
    body = bodies[1]
    assert body["sourceMessageId"] == message_id
    assert (body["url"], body["method"], body["maxRetries"]) == (destination.url(path), "POST", 1)
    assert body["sourceBody"] == b64("payload")
    assert body["sourceHeader"]["X-Src"] == ["1"]
    assert body["notBefore"] == body["createdAt"]
    assert body["createdAt"].isdigit()
    assert body["callerIP"] == "127.0.0.1"
    receiver.verify(signature=second.headers["upstash-signature"], body=second.text, url=callback)
    assert second.headers["content-type"] == "application/json"


def test_the_failure_callback_carries_the_dlq_id_once_retries_run_out(
    qstash: QStash, destination: Destination, path: str, receiver: Receiver
) -> None:
    destination.behave(path, status=500, fail_body=b"broken")
    failure = destination.url(path + "/failed")
    message_id = publish_one(qstash, url=destination.url(path), body="p", retries=1, failure_callback=failure)
    [got] = destination.wait_for(path + "/failed")
    body = json.loads(got.body)
    assert (body["status"], body["retried"], body["maxRetries"]) == (500, 1, 1)
    assert body["body"] == b64("broken")
    assert body["sourceBody"] == b64("p")
    assert body["sourceMessageId"] == message_id
    entry = qstash.dlq.get(body["dlqId"])
    assert entry.message_id == message_id
    receiver.verify(signature=got.headers["upstash-signature"], body=got.text, url=failure)
    assert len(destination.received(path)) == 2
    assert len(destination.received(path + "/failed")) == 1


def test_no_failure_callback_when_the_message_is_delivered(qstash: QStash, destination: Destination, path: str) -> None:
    message_id = publish_one(qstash, url=destination.url(path), body="p", failure_callback=destination.url(path + "/f"))
    destination.wait_for(path)
    delivered = LogFilter(message_id=message_id, state=LogState.DELIVERED)
    eventually(lambda: qstash.log.list(filter=delivered).logs, lambda logs: len(logs) == 1)
    time.sleep(0.02)
    assert destination.received(path + "/f") == []


def test_callback_headers_configure_and_forward_to_the_callback(
    qstash: QStash, destination: Destination, path: str
) -> None:
    message_id = publish_one(
        qstash,
        url=destination.url(path),
        body="p",
        callback=destination.url(path + "/cb"),
        callback_headers={"Forward-X-Cb": "yes", "Method": "PUT", "cb": "1"},
    )
    [got] = destination.wait_for(path + "/cb")
    assert got.method == "PUT"
    assert got.headers["x-cb"] == "yes"
    assert "cb" not in got.headers  # an unknown Upstash-Callback-* option is recorded, not forwarded
    assert qstash.message.get(message_id).callback_headers == {"X-Cb": ["yes"], "Cb": ["1"]}
