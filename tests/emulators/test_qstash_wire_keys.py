"""Issue #15: optional fields are left out when absent, as QStash does. For a message published with no
options, each resource's JSON has exactly the reference's required keys (§4) plus the few this server
always knows, and no resource carries an empty optional value."""

from __future__ import annotations

from typing import Any

from qstash import QStash

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess, eventually, publish_one

MESSAGE = {"messageId", "url", "method", "maxRetries", "notBefore", "createdAt", "callerIP", "retried"}
EVENT = {"time", "messageId", "state", "url", "method", "maxRetries"}
DLQ_ENTRY = MESSAGE | {"dlqId", "responseStatus", "responseHeader", "responseBody"}
SCHEDULE = {
    "scheduleId",
    "destination",
    "cron",
    "createdAt",
    "method",
    "retries",
    "isPaused",
    "callerIP",
    "lastScheduleStates",  # the Python SDK reads it unconditionally
    "nextScheduleTime",
}


def no_empty_values(item: dict[str, Any]) -> None:
    empty = [k for k, v in item.items() if v in ("", None, [], {}) and k != "lastScheduleStates"]
    assert empty == [], f"empty optional fields {empty} in {item}"


def test_a_bare_message_its_events_and_its_dlq_entry_carry_only_known_keys(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    destination.behave(path, status=500)
    message_id = publish_one(qstash, destination.url(path), retries=0)
    entries = eventually(
        lambda: qstash_server.call("GET", "/v2/dlq", params={"messageId": message_id}).json()["messages"],
        lambda m: len(m) == 1,
    )
    message = qstash_server.call("GET", f"/v2/messages/{message_id}").json()
    events = qstash_server.call("GET", "/v2/logs", params={"messageId": message_id}).json()["events"]
    created = next(e for e in events if e["state"] == "CREATED")
    assert set(message) == MESSAGE
    assert set(created) == EVENT
    assert set(entries[0]) == DLQ_ENTRY
    for item in (message, *events, entries[0]):
        no_empty_values(item)


def test_a_bare_schedule_carries_only_known_keys(
    qstash_server: EmulatorProcess, qstash: QStash, destination: Destination, path: str
) -> None:
    schedule_id = qstash.schedule.create(destination=destination.url(path), cron="0 0 1 1 *")
    try:
        shown = qstash_server.call("GET", f"/v2/schedules/{schedule_id}").json()
        assert set(shown) == SCHEDULE
        no_empty_values(shown)
    finally:
        qstash.schedule.delete(schedule_id)
