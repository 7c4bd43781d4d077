"""functions/webhooks.py end to end: a sender's signed delivery to the functions server, our QStash
emulator (time scale 0.001) delivering the job to the jobs function, the effects in the real Redis, the
dead letters behind a failing job."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from upstash_redis import Redis

from shared.jobs.dlq.model import entry_id
from shared.webhooks.receiver import payload_body
from tests.conftest import Gateway
from tests.functions.jobs_stack import JobsStack, start_jobs_stack
from tests.shared import webhook_signers as sign

GITHUB_SECRET = "gh-s3cret-value"
SOURCES = {
    "github": {"scheme": "github", "secrets": [GITHUB_SECRET],
               "job": {"push": "test.webhook_effect", "*": "webhooks.record"}},
    "failing": {"scheme": "github", "secrets": [GITHUB_SECRET], "job": "test.webhook_fails"},
    "slack": {"scheme": "slack", "secrets": ["slack-secret-value"], "job": "webhooks.record"},
    "stripe": {"scheme": "stripe", "secrets": ["whsec_stripe_value"], "tolerance_s": 300, "job": "webhooks.record"},
}  # fmt: skip


@pytest.fixture(scope="module")
def stack(gateway: Gateway) -> Iterator[JobsStack]:
    handle = start_jobs_stack(gateway, STASHKIT_WEBHOOK_SOURCES=json.dumps(SOURCES), STASHKIT_MAX_BODY_BYTES="4096")
    yield handle
    handle.stop()


@pytest.fixture
def redis(gateway: Gateway) -> Iterator[Redis]:
    with Redis(gateway.url, gateway.token) as client:
        yield client


def post(stack: JobsStack, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    # No admin token: a sender presents only its signature.
    return httpx.post(f"{stack.functions.url}/api/webhooks/{source}", content=body, headers=headers, timeout=10)


def push(tag: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"key": f"{tag}effects", "ref": "refs/heads/main"}).encode()
    return body, sign.github(GITHUB_SECRET, body)


def test_a_delivery_is_accepted_with_202_and_its_job_runs_once(stack: JobsStack, redis: Redis, tag: str) -> None:
    body, headers = push(tag)
    response = post(stack, "github", body, headers)
    assert response.status_code == 202, response.text
    assert response.json()["job"] == "test.webhook_effect"
    record = stack.wait_until_final(response.json()["message_id"])
    assert (record["state"], record["attempts"]) == ("succeeded", 1)
    assert redis.hgetall(f"{tag}effects") == {
        "effects": "1",
        "attempt": "1",
        "delivery_id": headers["X-GitHub-Delivery"],
    }
    again = post(stack, "github", body, headers)  # the sender's retry, or a replay
    assert (again.status_code, again.json()) == (200, {"duplicate": True})


def test_concurrent_identical_deliveries_enqueue_one_job(stack: JobsStack, redis: Redis, tag: str) -> None:
    body, headers = push(tag)
    responses: list[httpx.Response] = []

    def deliver() -> None:
        responses.append(post(stack, "github", body, headers))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
    [accepted] = [r for r in responses if r.status_code == 202]
    assert stack.wait_until_final(accepted.json()["message_id"])["state"] == "succeeded"
    assert redis.hget(f"{tag}effects", "effects") == "1"


def test_a_failing_job_ends_in_the_dlq_with_the_webhooks_body_intact(stack: JobsStack) -> None:
    body = b"\x00\xffnot utf-8 \x80" + uuid.uuid4().bytes
    response = post(stack, "failing", body, sign.github(GITHUB_SECRET, body))
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    entry = _wait_for_dead_letter(stack, entry_id(message_id))
    assert entry["job"] == "test.webhook_fails"
    assert "failing on purpose (failing)" in entry["error"]
    payload = json.loads(entry["body"])
    assert (payload["source"], payload["body_encoding"], payload_body(payload)) == ("failing", "base64", body)


def _wait_for_dead_letter(stack: JobsStack, dead_letter_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = stack.http.get(f"/api/dlq/entries/{dead_letter_id}")
        if response.status_code == 200 and response.json()["status"] == "dead":
            found: dict[str, Any] = response.json()
            return found
        time.sleep(0.05)
    raise AssertionError(f"no dead letter {dead_letter_id} within 20 s")


def test_the_default_record_job_keeps_the_delivery(stack: JobsStack) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps({"id": event_id, "type": "invoice.paid"}).encode()
    response = post(stack, "stripe", body, sign.stripe(["whsec_stripe_value"], body))
    assert (response.status_code, response.json()["job"]) == (202, "webhooks.record"), response.text
    assert stack.wait_until_final(response.json()["message_id"])["state"] == "succeeded"
    kept = stack.http.get("/api/webhooks/stripe/deliveries", params={"limit": 1000}).json()["deliveries"]
    [delivery] = [d for d in kept if d["delivery_id"] == event_id]
    assert (delivery["event"], delivery["body"], delivery["message_id"]) == ("invoice.paid", body.decode(),
                                                                            response.json()["message_id"])  # fmt: skip


def test_ping_and_url_verification_are_answered_inline(stack: JobsStack) -> None:
    ping = post(stack, "github", b"{}", sign.github(GITHUB_SECRET, b"{}", event="ping"))
    assert (ping.status_code, ping.json()) == (200, {"ping": True})
    body = json.dumps({"token": "t", "challenge": f"ch-{uuid.uuid4().hex}", "type": "url_verification"}).encode()
    verification = post(stack, "slack", body, sign.slack("slack-secret-value", body))
    assert (verification.status_code, verification.json()) == (200, {"challenge": json.loads(body)["challenge"]})


@pytest.mark.parametrize(
    ("source", "make", "status", "words"),
    [
        ("nope", lambda b: sign.github(GITHUB_SECRET, b), 404, "no webhook source named 'nope'"),
        ("github", lambda b: sign.github("wrong-secret", b), 401, "does not match"),
        ("github", lambda b: {"X-GitHub-Event": "push"}, 401, "x-hub-signature-256 header is missing"),
        ("stripe", lambda b: sign.stripe(["whsec_stripe_value"], b, timestamp=int(time.time()) - 3600), 401,
         "in the past; the source 'stripe' accepts 300 s"),
        ("stripe", lambda b: sign.stripe(["whsec_stripe_value"], b, timestamp=int(time.time()) + 3600), 401,
         "in the future"),
        ("github", lambda b: sign.github(GITHUB_SECRET, b * 500), 413, "over 4096 bytes"),
    ],
)  # fmt: skip
def test_refusals_are_problem_details_that_reveal_no_secret(
    stack: JobsStack, source: str, make: Any, status: int, words: str
) -> None:
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "x"}).encode()
    headers = make(body)
    content = body * 500 if status == 413 else body
    response = post(stack, source, content, headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]
    assert GITHUB_SECRET not in response.text
    assert "whsec_stripe_value" not in response.text
