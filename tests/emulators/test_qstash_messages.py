"""Messages (get, cancel, cancel many, cancel all) and the event log (states, filters, cursors)."""

from __future__ import annotations

import time

import pytest
from qstash import AsyncQStash, QStash
from qstash.errors import QStashError
from qstash.log import LogState

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess, eventually, publish_one, start_emulator


def states_of(qstash: QStash, message_id: str) -> list[str]:
    logs = qstash.log.list(filter={"message_id": message_id}).logs
    return [log.state.value for log in reversed(logs)]  # oldest first


def test_cancel_stops_a_pending_message(qstash: QStash, destination: Destination, path: str) -> None:
    message_id = publish_one(qstash, destination.url(path), body="x", delay="1h")
    qstash.message.cancel(message_id)
    assert states_of(qstash, message_id) == ["CREATED", "CANCEL_REQUESTED", "CANCELED"]
    with pytest.raises(QStashError, match="404"):
        qstash.message.cancel(message_id)
    time.sleep(0.02)
    assert destination.received(path) == []


def test_cancel_many_and_cancel_all_count_what_they_cancelled(destination: Destination, path: str) -> None:
    server = start_emulator()  # its own: cancel_all would cancel other tests' messages on the shared one
    qstash = server.client()
    try:
        ids = [publish_one(qstash, destination.url(path), body=str(i), delay="1h") for i in range(4)]
        assert qstash.message.cancel_many([*ids[:2], "msg_unknown"]) == 2
        assert qstash.message.cancel_all() == 2
        assert all(states_of(qstash, i)[-1] == "CANCELED" for i in ids)
    finally:
        qstash.http._client.close()
        server.stop()


def test_cancel_by_query_filter(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    kept = publish_one(qstash, destination.url(path + "/kept"), body="k", delay="1h")
    publish_one(qstash, destination.url(path), body="x", delay="1h", label=path)
    response = qstash_server.call("DELETE", "/v2/messages", params={"label": path})
    assert (response.status_code, response.json()) == (202, {"cancelled": 1})
    assert states_of(qstash, kept)[-1] == "CREATED"
    qstash.message.cancel(kept)


def test_a_retried_delivery_logs_each_state_in_order(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, fail_times=1)
    message_id = publish_one(qstash, destination.url(path), body="x", retries=1, label=path)
    states = eventually(lambda: states_of(qstash, message_id), lambda s: "DELIVERED" in s)
    assert states == ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]
    [retry] = qstash.log.list(filter={"message_id": message_id, "state": LogState.RETRY}).logs
    [error] = qstash.log.list(filter={"message_id": message_id, "state": LogState.ERROR}).logs
    assert retry.next_delivery_time is not None
    assert retry.next_delivery_time >= retry.time
    assert (error.response_status, error.label, error.max_retries) == (500, path, 1)


def test_event_pages_follow_the_cursor(qstash: QStash, destination: Destination, path: str) -> None:
    for i in range(3):
        publish_one(qstash, destination.url(path), body=str(i), label=path)
    destination.wait_for(path, 3)
    delivered = {"label": path, "state": LogState.DELIVERED}
    eventually(lambda: qstash.log.list(filter=delivered).logs, lambda logs: len(logs) == 3)  # type: ignore[arg-type]
    first = qstash.log.list(count=2, filter=delivered)  # type: ignore[arg-type]
    assert len(first.logs) == 2
    assert first.cursor is not None
    rest = qstash.log.list(count=2, cursor=first.cursor, filter=delivered)  # type: ignore[arg-type]
    assert len(rest.logs) == 1
    assert rest.cursor is None
    assert first.logs[0].time >= first.logs[1].time >= rest.logs[0].time


def test_the_logs_endpoint_serves_the_events(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    message_id = publish_one(qstash, destination.url(path), body="x")
    destination.wait_for(path)
    events = qstash_server.call("GET", "/v2/events", params={"messageId": message_id}).json()
    logs = qstash_server.call("GET", "/v2/logs", params={"messageId": message_id}).json()
    assert events == logs
    assert events["events"]


async def test_async_client_gets_cancels_and_lists(aqstash: AsyncQStash, destination: Destination, path: str) -> None:
    result = await aqstash.message.publish(url=destination.url(path), body="later", delay=3600)
    assert not isinstance(result, list)
    assert (await aqstash.message.get(result.message_id)).body == "later"
    await aqstash.message.cancel(result.message_id)
    logs = (await aqstash.log.list(filter={"message_id": result.message_id})).logs
    assert logs[0].state == LogState.CANCELED
