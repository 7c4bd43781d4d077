"""functions/jobs.py end to end: enqueue through the admin API, QStash (our emulator, at time scale 0.001)
delivers signed requests to the functions server, the handlers of tests/functions/sample_jobs.py record
their effects in the real Redis behind the gateway."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from upstash_redis import Redis

from tests.conftest import PUBLIC_URL, Gateway
from tests.emulators.qstash_fixtures import NEXT_KEY
from tests.functions.jobs_stack import JobsStack, delivery_headers, signature, start_jobs_stack


@pytest.fixture(scope="module")
def stack(gateway: Gateway) -> Iterator[JobsStack]:
    handle = start_jobs_stack(gateway)
    yield handle
    handle.stop()


@pytest.fixture
def redis(gateway: Gateway) -> Iterator[Redis]:
    with Redis(gateway.url, gateway.token) as client:
        yield client


def effects(redis: Redis, key: str) -> int:
    return int(redis.hget(key, "effects") or 0)


def test_an_enqueued_job_is_delivered_signed_and_runs_once(stack: JobsStack, redis: Redis, tag: str) -> None:
    key = f"{tag}effects"
    message_id = stack.enqueue("test.record", {"key": key})
    record = stack.wait_until_final(message_id)
    assert (record["state"], record["job"], record["attempts"]) == ("succeeded", "test.record", 1)
    assert record["finished_ms"] >= record["started_ms"]
    assert effects(redis, key) == 1


def test_a_failing_handler_is_retried_until_it_succeeds(stack: JobsStack, redis: Redis, tag: str) -> None:
    key = f"{tag}effects"
    message_id = stack.enqueue("test.fail_then_succeed", {"key": key, "failures": 2})
    record = stack.wait_until_final(message_id)
    assert (record["state"], record["attempts"]) == ("succeeded", 3)
    assert "failing attempt 2 on purpose" in record["last_error"]
    assert (effects(redis, key), redis.hget(key, "attempt")) == (1, "3")


def test_retry_after_is_what_qstash_hears_and_the_job_runs_again(stack: JobsStack, redis: Redis, tag: str) -> None:
    key = f"{tag}effects"
    message_id = stack.enqueue("test.retry_later", {"key": key, "after_s": 7})
    assert stack.wait_until_final(message_id)["state"] == "succeeded"
    assert (effects(redis, key), redis.hget(key, "attempt")) == (1, "2")
    events = stack.events(message_id, "DELIVERED")
    errors = [event for event in events if event["state"] == "ERROR"]
    assert [(event["responseStatus"], event["responseHeader"]["Retry-After"]) for event in errors] == [(503, ["7"])]


def test_a_permanent_failure_skips_the_retries(stack: JobsStack, tag: str) -> None:
    message_id = stack.enqueue("test.permanent", {"key": f"{tag}effects"})
    record = stack.wait_until_final(message_id)
    assert (record["state"], record["attempts"]) == ("dead", 1)
    assert "can never work" in record["last_error"]
    events = stack.events(message_id, "FAILED")
    assert {event["state"] for event in events} >= {"ERROR", "FAILED"}
    assert "RETRY" not in {event["state"] for event in events}


def test_a_run_past_its_timeout_is_cancelled_and_fails(stack: JobsStack, redis: Redis, tag: str) -> None:
    key = f"{tag}effects"
    record = stack.wait_until_final(stack.enqueue("test.slow", {"key": key, "sleep_s": 5}))
    assert (record["state"], record["last_error"]) == ("dead", "timed out after 0.3 s")
    assert effects(redis, key) == 0


def deliver(stack: JobsStack, job: str, payload: Any, message_id: str, **claims: Any) -> httpx.Response:
    """A delivery as QStash makes it, straight to the function (signed unless claims say otherwise)."""
    body = json.dumps(payload).encode()
    url = f"{PUBLIC_URL}/api/jobs/{job}"
    headers = delivery_headers(claims.pop("sub", url), body, message_id, **claims)
    return httpx.post(f"{stack.functions.url}/api/jobs/{job}", content=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "forgery",
    [
        {"missing": True},
        {"key": "sig_0000000000000000000000000000wrong"},
        {"exp": 1_000_000_000, "iat": 999_999_000, "nbf": 999_999_000},
        {"tampered": True},
        {"sub": f"{PUBLIC_URL}/api/jobs/test.permanent"},
        {"sub": "http://127.0.0.1/api/jobs/test.record"},
    ],
    ids=["missing", "wrong-key", "expired", "tampered-body", "other-job-url", "internal-url"],
)
def test_a_delivery_without_a_valid_signature_is_refused_and_runs_nothing(
    stack: JobsStack, redis: Redis, tag: str, forgery: dict[str, Any]
) -> None:
    key, message_id = f"{tag}effects", f"msg_{uuid.uuid4().hex}"
    body = json.dumps({"key": key}).encode()
    url = f"{PUBLIC_URL}/api/jobs/test.record"
    headers = delivery_headers(forgery.get("sub", url), body, message_id,
                               **{k: v for k, v in forgery.items() if k in ("exp", "iat", "nbf")})  # fmt: skip
    if "key" in forgery:
        headers["Upstash-Signature"] = signature(url, body, key=forgery["key"])
    if forgery.get("missing"):
        del headers["Upstash-Signature"]
    sent = body.replace(b"effects", b"effectz") if forgery.get("tampered") else body
    response = httpx.post(f"{stack.functions.url}/api/jobs/test.record", content=sent, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "www-authenticate" not in response.headers  # no bearer token would help a bad signature
    assert effects(redis, key) == 0
    assert stack.status(message_id) is None


def test_the_next_signing_key_is_accepted_during_a_rotation(stack: JobsStack, redis: Redis, tag: str) -> None:
    key = f"{tag}effects"
    response = deliver(stack, "test.record", {"key": key}, f"msg_{uuid.uuid4().hex}", key=NEXT_KEY)
    assert response.status_code == 200, response.text
    assert effects(redis, key) == 1


def test_a_replayed_delivery_has_one_effect(stack: JobsStack, redis: Redis, tag: str) -> None:
    key, message_id = f"{tag}effects", f"msg_{uuid.uuid4().hex}"
    first = deliver(stack, "test.record", {"key": key}, message_id)
    again = deliver(stack, "test.record", {"key": key}, message_id, retried=1)
    assert (first.status_code, first.json()["status"]) == (200, "succeeded")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert effects(redis, key) == 1


def test_two_concurrent_deliveries_of_one_message_run_it_once(stack: JobsStack, redis: Redis, tag: str) -> None:
    key, message_id = f"{tag}effects", f"msg_{uuid.uuid4().hex}"
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(deliver(stack, "test.slow", {"key": key, "sleep_s": 0.1}, message_id))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 409]
    busy = next(answer for answer in answers if answer.status_code == 409)
    assert int(busy.headers["retry-after"]) >= 1
    assert effects(redis, key) == 1


def deliver_together(stack: JobsStack, job: str, payload: Any, message_ids: list[str]) -> list[httpx.Response]:
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(len(message_ids))

    def send(message_id: str) -> None:
        start.wait()
        answers[message_id] = deliver(stack, job, payload, message_id)

    threads = [threading.Thread(target=send, args=(m,)) for m in message_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answers[m] for m in message_ids]


def test_an_overlapping_run_of_a_singleton_job_is_skipped_and_the_run_has_a_fencing_token(
    stack: JobsStack, redis: Redis, tag: str
) -> None:
    key, messages = f"{tag}effects", [f"msg_{uuid.uuid4().hex}" for _ in range(3)]
    answers = deliver_together(stack, "test.singleton", {"key": key, "sleep_s": 0.5}, messages)
    assert sorted(answer.json()["status"] for answer in answers) == ["skipped", "skipped", "succeeded"]
    ran = next(m for m, answer in zip(messages, answers, strict=True) if answer.json()["status"] == "succeeded")
    assert int(redis.hget(key, f"token:{ran}") or 0) > 0
    assert (effects(redis, key), redis.hget(key, "overlapped")) == (1, None)
    skipped = next(m for m in messages if m != ran)
    record = stack.status(skipped)
    assert record is not None and record["state"] == "skipped"
    after = deliver(stack, "test.singleton", {"key": key, "sleep_s": 0}, f"msg_{uuid.uuid4().hex}")
    assert after.json()["status"] == "succeeded"  # the lock was released
    tokens = sorted(int(v) for f, v in redis.hgetall(key).items() if f.startswith("token:"))
    assert len(tokens) == 2 and tokens[0] < tokens[1]


def test_a_singleton_job_may_ask_an_overlapping_run_back_instead(stack: JobsStack, redis: Redis, tag: str) -> None:
    key, messages = f"{tag}effects", [f"msg_{uuid.uuid4().hex}" for _ in range(2)]
    answers = deliver_together(stack, "test.singleton_retry", {"key": key, "sleep_s": 0.5}, messages)
    assert sorted(answer.status_code for answer in answers) == [200, 503]
    later = next(answer for answer in answers if answer.status_code == 503)
    assert later.headers["retry-after"] == "5"
    assert effects(redis, key) == 1


def test_bad_deliveries_are_problems(stack: JobsStack) -> None:
    unknown = deliver(stack, "test.nope", {}, f"msg_{uuid.uuid4().hex}")
    assert (unknown.status_code, unknown.json()["field"]) == (404, "name")
    body = b"not json"
    url = f"{PUBLIC_URL}/api/jobs/test.record"
    not_json = httpx.post(f"{stack.functions.url}/api/jobs/test.record", content=body,
                          headers=delivery_headers(url, body, f"msg_{uuid.uuid4().hex}"), timeout=10)  # fmt: skip
    assert not_json.status_code == 489
    assert not_json.headers["upstash-nonretryable-error"] == "true"


def test_the_admin_routes_need_the_admin_token(stack: JobsStack) -> None:
    anonymous = httpx.post(f"{stack.functions.url}/api/jobs/test.record/enqueue", json={"payload": {}}, timeout=10)
    assert anonymous.status_code == 401
    assert httpx.get(f"{stack.functions.url}/api/jobs/messages/x", timeout=10).status_code == 401
    missing = stack.http.get("/api/jobs/messages/msg_nothing")
    assert (missing.status_code, missing.json()["field"]) == (404, "id")
    bad = stack.http.post("/api/jobs/test.record/enqueue", json={"payload": {}, "delay_s": -1})
    assert (bad.status_code, bad.json()["field"]) == (422, "body.delay_s")
