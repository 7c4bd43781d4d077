"""Issue #15: the bulk actions the current JS SDK calls (`POST /v2/dlq/retry`, `DELETE /v2/dlq`,
`DELETE /v2/messages`, `GET /v2/logs` with filters), reproduced with plain HTTP where the Python SDK has
no call: ids, filters (repeated = OR, several = AND), `count` and cursors, typos refused with 400 and
nothing touched, several labels, a schedule without a body.

Tests on the shared emulator select by their own label or path; the ones acting on everything start a
private emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from qstash import QStash

from tests.emulators.qstash_fixtures import (
    Destination,
    EmulatorProcess,
    eventually,
    publish_one,
    start_emulator,
)

LATER = "100d"  # still pending at time scale 0.001 (8640 s)


def fail_into_dlq(qstash: QStash, destination: Destination, path: str, count: int, status: int = 500) -> list[str]:
    destination.behave(path, status=status)
    ids = [publish_one(qstash, destination.url(path), body=f"m{i}", retries=0, label=path) for i in range(count)]
    eventually(lambda: dlq_of(qstash, path), lambda m: len(m) == count)
    return ids


def dlq_of(qstash: QStash, label: str) -> list[Any]:
    return qstash.dlq.list(filter={"label": label}).messages


def pending(qstash: QStash, message_id: str) -> bool:
    logs = qstash.log.list(filter={"message_id": message_id}).logs
    return logs[0].state.value == "CREATED"


@pytest.fixture
def own_emulator() -> Iterator[EmulatorProcess]:
    server = start_emulator()
    yield server
    server.stop()


def test_bulk_retry_by_ids_publishes_again_and_removes_only_those(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    originals = fail_into_dlq(qstash, destination, path, 3)
    entries = dlq_of(qstash, path)
    chosen = entries[:2]
    destination.behave(path)  # the destination recovers
    response = qstash_server.call("POST", "/v2/dlq/retry", params={"dlqIds": ",".join(e.dlq_id for e in chosen)})
    assert response.status_code in (200, 201)
    responses = response.json()["responses"]
    assert len(responses) == 2 and "cursor" not in response.json()
    new_ids = {r["messageId"] for r in responses}
    assert not new_ids & set(originals)
    assert [e.dlq_id for e in dlq_of(qstash, path)] == [entries[2].dlq_id]
    retried = {r.text for r in destination.wait_for(path, 5)[3:]}
    assert retried == {e.body for e in chosen}
    again = qstash.message.get(responses[0]["messageId"])
    assert (again.max_retries, again.label) == (0, path)  # the original options


def test_bulk_retry_by_filter_pages_with_count_and_cursor(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    fail_into_dlq(qstash, destination, path, 3)
    destination.behave(path)
    first = qstash_server.call("POST", "/v2/dlq/retry", params={"label": path, "count": 2}).json()
    assert len(first["responses"]) == 2 and first["cursor"]
    rest = qstash_server.call("POST", "/v2/dlq/retry", params={"label": path, "count": 2, "cursor": first["cursor"]})
    assert len(rest.json()["responses"]) == 1 and "cursor" not in rest.json()
    assert dlq_of(qstash, path) == []
    assert len(destination.wait_for(path, 6)) == 6


@pytest.mark.parametrize(
    ("method", "endpoint", "params"),
    [
        ("DELETE", "/v2/dlq", {"labeel": "x", "count": "100"}),
        ("POST", "/v2/dlq/retry", {"lable": "x"}),
        ("GET", "/v2/dlq", {"stat": "500"}),
        ("DELETE", "/v2/messages", {"labl": "x"}),
        ("GET", "/v2/logs", {"hots": "example.org"}),
        ("GET", "/v2/events", {"api": "llm"}),
        ("DELETE", "/v2/messages", {"messageId": "msg_x"}),  # bulk cancel takes messageIds only
        ("DELETE", "/v2/dlq", {"label": ""}),  # an empty filter would select everything
        ("DELETE", "/v2/dlq", {"all": "yes"}),
        ("DELETE", "/v2/dlq", {"all": "true", "label": "x"}),
        ("DELETE", "/v2/messages", {"messageIds": "msg_x", "label": "x"}),
        ("DELETE", "/v2/dlq", {"responseStatus": "5xx"}),
        ("DELETE", "/v2/dlq", {"count": "0"}),
        ("GET", "/v2/logs", {"order": "sideways"}),
    ],
)
def test_unknown_or_malformed_parameters_are_refused(
    qstash_server: EmulatorProcess, method: str, endpoint: str, params: dict[str, str]
) -> None:
    response = qstash_server.call(method, endpoint, params=params)
    assert response.status_code == 400
    assert next(iter(params)) in response.json()["error"] or "all" in response.json()["error"]


def test_a_typod_filter_deletes_nothing(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    fail_into_dlq(qstash, destination, path, 2)
    response = qstash_server.call("DELETE", "/v2/dlq", params={"labeel": path, "count": 100})
    assert response.status_code == 400 and "labeel" in response.json()["error"]
    assert len(dlq_of(qstash, path)) == 2
    assert qstash_server.call("DELETE", "/v2/dlq", params={"label": path}).json() == {"deleted": 2}


def test_repeated_filters_match_any_and_different_filters_all(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    ids = {cp: publish_one(qstash, destination.url(f"{path}/{cp}"), body=cp, delay=LATER) for cp in ("a", "b", "c")}
    labelled = publish_one(qstash, destination.url(f"{path}/a"), body="l", delay=LATER, label=path)
    paths = [f"{path}/a", f"{path}/b"]
    both = qstash_server.call("DELETE", "/v2/messages", params={"path": paths, "label": path})
    assert both.json() == {"cancelled": 1}  # path AND label
    assert not pending(qstash, labelled)
    either = qstash_server.call("DELETE", "/v2/messages", params={"path": paths})
    assert either.json() == {"cancelled": 2}  # a OR b
    assert [pending(qstash, ids[cp]) for cp in ("a", "b", "c")] == [False, False, True]
    qstash.message.cancel(ids["c"])


def test_host_filter_on_cancel_and_logs(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    by_name = destination.url(path).replace("127.0.0.1", "localhost")
    near = publish_one(qstash, by_name, body="n", delay=LATER, label=path)
    far = publish_one(qstash, destination.url(path), body="f", delay=LATER, label=path)
    logs = qstash_server.call("GET", "/v2/logs", params={"host": "localhost", "label": path}).json()["events"]
    assert {e["messageId"] for e in logs} == {near}
    cancelled = qstash_server.call("DELETE", "/v2/messages", params={"host": "localhost", "label": path})
    assert cancelled.json() == {"cancelled": 1}
    assert pending(qstash, far) and not pending(qstash, near)
    qstash.message.cancel(far)


def test_count_caps_cancel_and_delete(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    for i in range(2):
        publish_one(qstash, destination.url(path + "/later"), body=str(i), delay=LATER, label=path)
    assert qstash_server.call("DELETE", "/v2/messages", params={"label": path, "count": 1}).json() == {"cancelled": 1}
    assert qstash_server.call("DELETE", "/v2/messages", params={"label": path}).json() == {"cancelled": 1}
    fail_into_dlq(qstash, destination, path, 3)
    first = qstash_server.call("DELETE", "/v2/dlq", params={"label": path, "count": 1}).json()
    assert first["deleted"] == 1 and first["cursor"]
    assert len(dlq_of(qstash, path)) == 2


def test_dlq_filters_alone_and_combined(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    fail_into_dlq(qstash, destination, path, 2, status=500)
    destination.behave(path + "/gone", status=404)
    gone = publish_one(qstash, destination.url(path + "/gone"), body="g", retries=0, label=path)
    eventually(lambda: dlq_of(qstash, path), lambda m: len(m) == 3)

    def count(**params: Any) -> int:
        listed = qstash_server.call("GET", "/v2/dlq", params={"label": path, **params}).json()["messages"]
        return len(listed)

    assert count(responseStatus=404) == 1
    assert count(responseStatus=[404, 500]) == 3
    assert count(messageId=gone) == 1
    assert count(url=destination.url(path)) == 2
    assert count(path=path + "/gone", responseStatus=500) == 0
    assert count(callerIp="127.0.0.1") == 3
    assert count(fromDate=0, toDate=1) == 0
    deleted = qstash_server.call("DELETE", "/v2/dlq", params={"label": path, "responseStatus": 404})
    assert deleted.json() == {"deleted": 1}
    assert count() == 2


def test_several_labels_are_kept_and_filterable(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    destination.behave(path, status=500)
    first, second = path + "-a", path + "-b"
    message_id = publish_one(qstash, destination.url(path), body="x", retries=0, label=f"{first},{second}")
    [entry] = eventually(lambda: dlq_of(qstash, second), lambda m: len(m) == 1)
    raw_entry = qstash_server.call("GET", f"/v2/dlq/{entry.dlq_id}").json()
    message = qstash_server.call("GET", f"/v2/messages/{message_id}").json()
    events = qstash_server.call("GET", "/v2/logs", params={"label": second}).json()["events"]
    for item in (raw_entry, message, *events):
        assert (item["label"], item["labels"]) == (first, [first, second])
    assert {e["messageId"] for e in events} == {message_id}
    assert qstash.message.get(message_id).label == first
    plain = qstash_server.call("GET", f"/v2/messages/{publish_one(qstash, destination.url(path), body='p')}")
    assert "label" not in plain.json() and "labels" not in plain.json()


def test_a_schedule_without_a_body_leaves_body_out(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    schedule_id = qstash.schedule.create(destination=destination.url(path), cron="0 0 1 1 *", body="b")
    assert qstash_server.call("GET", f"/v2/schedules/{schedule_id}").json()["body"] == "b"
    qstash.schedule.create(destination=destination.url(path), cron="0 0 1 1 *", schedule_id=schedule_id)
    shown = qstash_server.call("GET", f"/v2/schedules/{schedule_id}").json()
    assert "body" not in shown and "bodyBase64" not in shown
    listed = [s for s in qstash_server.call("GET", "/v2/schedules").json() if s["scheduleId"] == schedule_id]
    assert "body" not in listed[0]
    assert qstash.schedule.get(schedule_id).body is None
    qstash.schedule.delete(schedule_id)


def test_no_filter_or_all_acts_on_everything(own_emulator: EmulatorProcess, destination: Destination) -> None:
    qstash = own_emulator.client()
    try:
        fail_into_dlq(qstash, destination, "/one", 2)
        fail_into_dlq(qstash, destination, "/two", 1)
        destination.behave("/one")
        destination.behave("/two")
        retried = own_emulator.call("POST", "/v2/dlq/retry").json()
        assert len(retried["responses"]) == 3
        fail_into_dlq(qstash, destination, "/three", 2)
        assert own_emulator.call("DELETE", "/v2/dlq", params={"all": "true", "count": 1}).json()["deleted"] == 1
        assert own_emulator.call("DELETE", "/v2/dlq", params={"all": "true"}).json() == {"deleted": 1}
        for i in range(3):
            publish_one(qstash, destination.url("/later"), body=str(i), delay=LATER)
        assert own_emulator.call("DELETE", "/v2/messages", params={"all": "true", "count": 2}).json() == {
            "cancelled": 2
        }
        assert qstash.message.cancel_all() == 1
    finally:
        qstash.http._client.close()


def test_retry_headers_override_the_original_options(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    fail_into_dlq(qstash, destination, path, 2)
    bad = qstash_server.call("POST", "/v2/dlq/retry", params={"label": path}, headers={"Upstash-Retries": "many"})
    assert bad.status_code == 400 and "Upstash-Retries" in bad.json()["error"]
    assert len(dlq_of(qstash, path)) == 2  # nothing retried
    headers = {"Upstash-Retries": "2", "Upstash-Label": path + "-again", "Upstash-Delay": LATER}
    retried = qstash_server.call("POST", "/v2/dlq/retry", params={"label": path}, headers=headers).json()
    for response in retried["responses"]:
        message = qstash.message.get(response["messageId"])
        assert (message.max_retries, message.label) == (2, path + "-again")
    assert qstash_server.call("DELETE", "/v2/messages", params={"label": path + "-again"}).json() == {"cancelled": 2}
