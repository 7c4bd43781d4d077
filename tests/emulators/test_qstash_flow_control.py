"""Flow control: per-key parallelism and rate, the key's info, pause/resume, pin/unpin (reference §3)."""

from __future__ import annotations

import time

import pytest
from qstash import AsyncQStash, QStash
from qstash.errors import QStashError

from tests.emulators.qstash_fixtures import Destination, eventually


def key_of(path: str) -> str:
    return "fc-" + path.strip("/")


def test_parallelism_limits_attempts_in_flight_per_key(qstash: QStash, destination: Destination, path: str) -> None:
    behaviour = destination.behave(path, delay_s=0.04)
    for i in range(8):
        qstash.message.publish(
            url=destination.url(path), body=str(i), flow_control={"key": key_of(path), "parallelism": 2}
        )
    destination.wait_for(path, 8)
    assert behaviour.max_active == 2


def test_rate_limits_starts_per_period(qstash: QStash, destination: Destination, path: str) -> None:
    # 2 per 150 s at time scale 0.001: 2 per 150 ms.
    for i in range(6):
        qstash.message.publish(
            url=destination.url(path), body=str(i), flow_control={"key": key_of(path), "rate": 2, "period": 150}
        )
    received = destination.wait_for(path, 6, timeout_s=3)
    starts = [r.at for r in received]
    # Measured on arrival: the period runs from the emulator's start of the first attempt, which may
    # arrive a few ms late (its connection is new), so allow that jitter; unthrottled, these are ~0.
    assert starts[2] - starts[0] >= 0.1
    assert starts[4] - starts[2] >= 0.1


def test_info_pause_and_resume(qstash: QStash, destination: Destination, path: str) -> None:
    key = key_of(path)
    qstash.flow_control.pause(key)
    for i in range(2):
        qstash.message.publish(
            url=destination.url(path),
            body=str(i),
            flow_control={"key": key, "parallelism": 5, "rate": 7, "period": "1m"},
        )
    info = eventually(lambda: qstash.flow_control.get(key), lambda i: i.wait_list_size == 2)
    assert (info.is_paused, info.parallelism_max, info.rate_max, info.rate_period) == (True, 5, 7, 60)
    time.sleep(0.05)
    assert destination.received(path) == []
    qstash.flow_control.resume(key)
    destination.wait_for(path, 2)
    info = qstash.flow_control.get(key)
    assert (info.is_paused, info.wait_list_size, info.parallelism_count) == (False, 0, 0)


def test_pin_overrides_message_settings_until_unpinned(qstash: QStash, destination: Destination, path: str) -> None:
    key = key_of(path)
    behaviour = destination.behave(path, delay_s=0.03)
    qstash.flow_control.pin(key, {"parallelism": 1})
    for i in range(4):
        qstash.message.publish(url=destination.url(path), body=str(i), flow_control={"key": key, "parallelism": 4})
    destination.wait_for(path, 4)
    assert behaviour.max_active == 1
    info = qstash.flow_control.get(key)
    assert (info.is_pinned_parallelism, info.parallelism_max) == (True, 1)
    qstash.flow_control.unpin(key, {"parallelism": True})
    qstash.flow_control.reset_rate(key)
    assert not qstash.flow_control.get(key).is_pinned_parallelism


def test_unknown_key_is_404(qstash: QStash, path: str) -> None:
    with pytest.raises(QStashError, match="404"):
        qstash.flow_control.get(key_of(path))


async def test_async_client_reads_global_parallelism(aqstash: AsyncQStash) -> None:
    info = await aqstash.flow_control.get_global_parallelism()
    assert info.parallelism_max > 0
    assert info.parallelism_count >= 0
