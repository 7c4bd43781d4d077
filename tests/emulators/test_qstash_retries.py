"""Retries, their spacing (time scale 0.001), Retry-After, 489, attempt timeouts, the DLQ after the last
attempt, and Upstash-Delay / Upstash-Not-Before."""

from __future__ import annotations

import itertools
import time

from qstash import QStash

from tests.emulators.qstash_fixtures import Destination, Received, eventually, publish_one


def gaps(received: list[Received]) -> list[float]:
    return [later.at - earlier.at for earlier, later in itertools.pairwise(received)]


def test_failures_are_retried_with_the_default_backoff_scaled(
    qstash: QStash, destination: Destination, path: str
) -> None:
    destination.behave(path, fail_times=2)
    message_id = publish_one(qstash, url=destination.url(path), body="x", retries=3)
    received = destination.wait_for(path, 3)
    assert [r.headers["upstash-retried"] for r in received] == ["0", "1", "2"]
    assert {r.headers["upstash-message-id"] for r in received} == {message_id}
    first, second = gaps(received)
    # min(86400, e^(2.5 n)) s at scale 0.001: 12.2 ms, then 148 ms. Lower bounds are exact (a retry
    # is scheduled after the failed answer); upper bounds only tell scaled waits from unscaled ones.
    assert 0.011 <= first < 0.14
    assert 0.145 <= second < 1.0
    time.sleep(0.05)
    assert len(destination.received(path)) == 3


def test_retry_delay_expression_sets_the_spacing(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, fail_times=2)
    qstash.message.publish(url=destination.url(path), body="x", retries=2, retry_delay="40000 * (1 + retried)")
    first, second = gaps(destination.wait_for(path, 3))
    assert 0.039 <= first < 0.5
    assert 0.079 <= second < 0.5


def test_retry_after_from_the_destination_is_honoured(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, fail_times=1, fail_status=429, headers={"Retry-After": "100"})
    qstash.message.publish(url=destination.url(path), body="x", retries=1)
    [gap] = gaps(destination.wait_for(path, 2))
    assert 0.099 <= gap < 1.0  # 100 s at scale 0.001, not the default 12 ms


def test_retry_after_as_a_go_duration(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, fail_times=1, fail_status=503, headers={"Retry-After": "1m30s"})
    qstash.message.publish(url=destination.url(path), body="x", retries=1)
    [gap] = gaps(destination.wait_for(path, 2))
    assert 0.089 <= gap < 1.0


def test_489_with_the_non_retryable_flag_goes_straight_to_the_dlq(
    qstash: QStash, destination: Destination, path: str
) -> None:
    destination.behave(path, status=489, headers={"Upstash-NonRetryable-Error": "true"}, fail_body=b"stop")
    message_id = publish_one(qstash, url=destination.url(path), body="x", retries=3)
    destination.wait_for(path)
    listing = eventually(lambda: qstash.dlq.list(filter={"message_id": message_id}), lambda r: len(r.messages) == 1)
    entry = listing.messages[0]
    assert (entry.response_status, entry.response_body) == (489, "stop")
    time.sleep(0.05)
    assert len(destination.received(path)) == 1


def test_489_without_the_flag_is_an_ordinary_failure(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, fail_times=1, fail_status=489)
    qstash.message.publish(url=destination.url(path), body="x", retries=1)
    assert len(destination.wait_for(path, 2)) == 2


def test_the_last_failed_attempt_puts_the_message_in_the_dlq_with_the_response(
    qstash: QStash, destination: Destination, path: str
) -> None:
    destination.behave(path, status=404, fail_body=b"404 Not Found", headers={"X-Why": "gone"})
    message_id = publish_one(
        qstash, as_json=True, url=destination.url(path), body={"a": 1}, retries=1, retry_delay="10", label=path
    )
    assert len(destination.wait_for(path, 2)) == 2
    listing = eventually(lambda: qstash.dlq.list(filter={"label": path}), lambda r: len(r.messages) == 1)
    entry = listing.messages[0]
    assert entry.message_id == message_id
    assert entry.dlq_id
    assert (entry.response_status, entry.response_body) == (404, "404 Not Found")
    assert entry.response_headers is not None
    assert entry.response_headers["X-Why"] == ["gone"]
    assert entry.retry_delay_expression == "10"
    assert entry.body == '{"a": 1}'


def test_an_attempt_that_outlives_upstash_timeout_fails(qstash: QStash, destination: Destination, path: str) -> None:
    destination.behave(path, delay_s=1.0)
    message_id = publish_one(qstash, url=destination.url(path), body="x", retries=0, timeout="150ms")
    started = time.monotonic()
    listing = eventually(lambda: qstash.dlq.list(filter={"message_id": message_id}), lambda r: len(r.messages) == 1)
    assert time.monotonic() - started < 0.9
    assert listing.messages[0].response_status == 0


def test_upstash_delay_holds_the_delivery(qstash: QStash, destination: Destination, path: str) -> None:
    sent = time.time()
    qstash.message.publish(url=destination.url(path), body="x", delay="150s")  # 150 ms at scale 0.001
    [got] = destination.wait_for(path)
    assert 0.145 <= got.at - sent < 1.0


def test_upstash_not_before_holds_the_delivery(qstash: QStash, destination: Destination, path: str) -> None:
    sent = time.time()
    not_before = int(sent) + 200  # 200 s ahead: about 0.2 s at scale 0.001
    message_id = publish_one(qstash, url=destination.url(path), body="x", not_before=not_before)
    assert qstash.message.get(message_id).not_before == not_before * 1000
    [got] = destination.wait_for(path)
    assert 0.15 <= got.at - sent < 1.0
