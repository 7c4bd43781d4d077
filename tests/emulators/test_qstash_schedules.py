"""Schedules under the controllable clock (`POST /__clock/advance`), plus delays and the deduplication
window, which also follow that clock. These tests own an emulator at time scale 1, so moving its clock
cannot disturb the shared one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from qstash import QStash
from qstash.errors import QStashError
from qstash.message import PublishResponse
from qstash.schedule import ScheduleState

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess, start_emulator


@pytest.fixture(scope="module")
def clock_server() -> Iterator[EmulatorProcess]:
    server = start_emulator("--time-scale", "1")
    yield server
    server.stop()


def align_to_minute(server: EmulatorProcess) -> None:
    """Move the clock to one second past a minute boundary, so the ticks an advance crosses are exact."""
    now_ms = server.call("GET", "/__clock").json()["nowMs"]
    server.advance((60_000 - now_ms % 60_000) / 1000 + 1)


@pytest.fixture
def client(clock_server: EmulatorProcess) -> Iterator[QStash]:
    qstash = clock_server.client()
    yield qstash
    qstash.http._client.close()


def test_ticks_fire_when_the_clock_advances(
    client: QStash, clock_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    align_to_minute(clock_server)
    schedule_id = client.schedule.create(destination=destination.url(path), cron="* * * * *", body="tick")
    time.sleep(0.05)
    assert destination.received(path) == []
    clock_server.advance(180)
    received = destination.wait_for(path, 3)
    time.sleep(0.05)
    assert len(destination.received(path)) == 3  # one per minute boundary crossed
    assert {r.headers["upstash-schedule-id"] for r in received} == {schedule_id}
    assert [r.text for r in received] == ["tick"] * 3
    schedule = client.schedule.get(schedule_id)
    assert schedule.last_schedule_time is not None
    assert schedule.next_schedule_time is not None
    assert schedule.next_schedule_time - schedule.last_schedule_time == 60_000
    assert schedule.last_schedule_states is not None
    assert set(schedule.last_schedule_states.values()) <= {ScheduleState.SUCCESS, ScheduleState.IN_PROGRESS}
    client.schedule.delete(schedule_id)


def test_a_paused_schedule_skips_ticks_until_resumed(
    client: QStash, clock_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    schedule_id = client.schedule.create(destination=destination.url(path), cron="*/2 * * * *")
    client.schedule.pause(schedule_id)
    assert client.schedule.get(schedule_id).paused
    clock_server.advance(300)
    time.sleep(0.05)
    assert destination.received(path) == []
    response = clock_server.call("POST", f"/v2/schedules/{schedule_id}/resume")  # the documented POST form
    assert response.status_code == 200
    clock_server.advance(120)
    destination.wait_for(path, 1)
    client.schedule.delete(schedule_id)


def test_schedule_api_round_trip(client: QStash, destination: Destination, path: str) -> None:
    schedule_id = client.schedule.create_json(
        destination=destination.url(path),
        cron="CRON_TZ=America/New_York 30 9 * * MON-FRI",
        body={"a": 1},
        headers={"X-S": "1"},
        retries=2,
        delay="10s",
        timeout=30,
        callback=destination.url(path + "/cb"),
        schedule_id=path.strip("/")[-60:],
        label="sched",
    )
    assert schedule_id == path.strip("/")[-60:]
    schedule = client.schedule.get(schedule_id)
    assert schedule.cron == "CRON_TZ=America/New_York 30 9 * * MON-FRI"
    assert (schedule.body, schedule.retries, schedule.delay, schedule.timeout) == ('{"a": 1}', 2, 10, 30)
    assert schedule.headers == {"Content-Type": ["application/json"], "X-S": ["1"]}
    assert (schedule.callback, schedule.label, schedule.paused) == (destination.url(path + "/cb"), "sched", False)
    assert schedule.next_schedule_time is not None
    assert schedule.next_schedule_time > schedule.created_at
    assert schedule_id in [s.schedule_id for s in client.schedule.list()]
    client.schedule.delete(schedule_id)
    with pytest.raises(QStashError, match="404"):
        client.schedule.get(schedule_id)


def test_a_schedule_can_enqueue_to_a_queue(
    client: QStash, clock_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    queue = path.strip("/")[-60:]
    align_to_minute(clock_server)
    schedule_id = client.schedule.create(destination=destination.url(path), cron="* * * * *", queue=queue)
    assert client.schedule.get(schedule_id).queue == queue
    clock_server.advance(60)
    [got] = destination.wait_for(path)
    assert client.message.get(got.headers["upstash-message-id"]).queue == queue
    client.schedule.delete(schedule_id)


def test_not_before_waits_for_the_clock(
    client: QStash, clock_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    now_s = clock_server.call("GET", "/__clock").json()["nowMs"] // 1000
    client.message.publish(url=destination.url(path), body="later", not_before=now_s + 3600)
    client.message.publish(url=destination.url(path), body="delayed", delay="2h")
    time.sleep(0.05)
    assert destination.received(path) == []
    assert clock_server.advance(3601)["fired"] >= 1
    [got] = destination.wait_for(path)
    assert got.text == "later"
    clock_server.advance(3600)
    assert [r.text for r in destination.wait_for(path, 2)] == ["later", "delayed"]


def test_the_deduplication_window_is_ten_minutes_of_clock(
    client: QStash, clock_server: EmulatorProcess, destination: Destination, path: str
) -> None:
    def publish() -> PublishResponse:
        result = client.message.publish(url=destination.url(path), body="d", deduplication_id=path)
        assert isinstance(result, PublishResponse)
        return result

    first = publish()
    clock_server.advance(599)
    assert publish().deduplicated
    clock_server.advance(2)
    fresh = publish()
    assert not fresh.deduplicated
    assert fresh.message_id != first.message_id
