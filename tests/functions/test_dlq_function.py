"""functions/dlq.py over HTTP: QStash's failure callback and the admin API, against real servers.

Each module-scoped stack is the whole path: the jobs function enqueues through our QStash emulator,
which delivers to the functions server (its `--route`), retries, and posts the failure callback to
/api/dlq/callback, signed. Redis is a private redis-server behind a gateway, so these tests own the
`{dlq}` keys they read.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qstash import QStash
from upstash_redis import Redis

from shared.jobs.dlq.model import entry_id
from tests.conftest import PUBLIC_URL, Gateway
from tests.emulators.qstash_fixtures import NEXT_KEY, eventually, publish_one, wait_until
from tests.functions.dlq_stack import (
    WAIT_S,
    DlqStack,
    failure_callback,
    sign,
    start_dlq_stack,
)
from tests.servers import free_port


@pytest.fixture(scope="module")
def stack(private_gateway: Gateway) -> Iterator[DlqStack]:
    handle = start_dlq_stack(private_gateway)
    yield handle
    handle.stop()


@pytest.fixture
def redis(private_gateway: Gateway) -> Iterator[Redis]:
    with Redis(private_gateway.url, private_gateway.token) as client:
        yield client


def post_callback(stack: DlqStack, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({"Upstash-Signature": signature} if signature else {})
    return httpx.post(f"{stack.functions.url}/api/dlq/callback", content=body, headers=headers, timeout=30)


def test_a_job_that_runs_out_of_retries_becomes_one_dead_letter(stack: DlqStack) -> None:
    message_id = stack.enqueue("dlq.fails", {"n": 1})
    entry = stack.wait_for_entry(entry_id(message_id))
    assert entry["job"] == "dlq.fails" and entry["message_id"] == message_id
    assert entry["attempts"] == 2  # retries=1
    assert entry["error"] == "RuntimeError: boom {'n': 1}"  # the handler's exception, from the problem detail
    assert json.loads(entry["body"]) == {"n": 1} and entry["body_base64"] is None
    assert entry["response_status"] == 500 and entry["dlq_id"]
    assert entry["redriven_as"] is None and entry["failed_at"] > 1_700_000_000_000
    stack.wait_for_job_state(message_id, "dead")


def test_a_signed_callback_is_recorded_once_however_often_it_arrives(stack: DlqStack) -> None:
    body = json.dumps(failure_callback("msg_signed_once")).encode()
    for _ in range(3):
        response = post_callback(stack, body, sign(body))
        assert response.status_code == 200, response.text
    assert response.json() == {"id": entry_id("msg_signed_once"), "message_id": "msg_signed_once",
                               "outcome": "duplicate"}  # fmt: skip
    entry = stack.entry(entry_id("msg_signed_once"))
    assert entry is not None
    assert (entry["job"], entry["attempts"], entry["error"]) == ("dlq.fails", 4, "ValueError: x")
    assert entry["body"] == '{"to": "a@b"}'
    assert stack.job_state("msg_signed_once") == "dead"
    next_key = json.dumps(failure_callback("msg_next_key")).encode()
    assert post_callback(stack, next_key, sign(next_key, key=NEXT_KEY)).status_code == 200  # during a rotation


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: None, id="missing"),
        pytest.param(lambda body: sign(body, key="sig_not_the_key_of_this_emulator_"), id="unknown-key"),
        pytest.param(lambda body: sign(body + b" "), id="other-body"),
        pytest.param(lambda body: sign(body, url=PUBLIC_URL + "/api/jobs/dlq.fails"), id="other-url"),
        pytest.param(lambda body: sign(body, exp=1_000_000_000), id="expired"),
    ],
)
def test_an_unsigned_or_forged_callback_is_401_and_stores_nothing(stack: DlqStack, forge: Any) -> None:
    message_id = f"msg_forged_{uuid.uuid4().hex}"
    body = json.dumps(failure_callback(message_id)).encode()
    response = post_callback(stack, body, forge(body))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "Upstash-Signature"
    assert stack.entry(entry_id(message_id)) is None
    assert stack.job_state(message_id) is None


def test_a_forged_callback_is_refused_before_its_body_is_read(stack: DlqStack) -> None:
    assert post_callback(stack, b"not json", None).status_code == 401  # not a 400 that tells it what to fix


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"sourceMessageId": None}, 422, "body.sourceMessageId"),
        ({"sourceMessageId": ""}, 422, "body.sourceMessageId"),
        ({"retried": "three"}, 422, "body.retried"),
        ({"sourceBody": "***"}, 422, "body.sourceBody"),
        ({"url": "https://elsewhere.test/webhook"}, 422, "body.url"),
    ],
)
def test_a_malformed_callback_is_a_problem_naming_the_field(
    stack: DlqStack, change: dict[str, Any], status: int, field: str
) -> None:
    fields = {k: v for k, v in (failure_callback("msg_malformed") | change).items() if v is not None}
    body = json.dumps(fields).encode()
    response = post_callback(stack, body, sign(body))
    assert (response.status_code, response.json()["field"]) == (status, field)
    assert stack.entry(entry_id("msg_malformed")) is None


def test_a_callback_that_is_not_json_is_400(stack: DlqStack) -> None:
    response = post_callback(stack, b"{oops", sign(b"{oops"))
    assert (response.status_code, response.json()["field"]) == (400, "body")


def test_a_callback_answers_503_while_redis_is_down_so_qstash_retries_it(stack: DlqStack) -> None:
    dead_redis = Gateway(f"http://127.0.0.1:{free_port()}", stack.gateway.token, stack.gateway.process, "")
    broken = start_dlq_stack(dead_redis)
    try:
        body = json.dumps(failure_callback("msg_while_down")).encode()
        response = post_callback(broken, body, sign(body))
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert "retry-after" in response.headers
    finally:
        broken.stop()
    assert post_callback(stack, body, sign(body)).status_code == 200  # QStash's retry, once Redis is back


def test_admin_routes_need_the_admin_token(stack: DlqStack) -> None:
    anonymous = httpx.get(f"{stack.functions.url}/api/dlq/entries", timeout=30)
    assert anonymous.status_code == 401
    bad = stack.http.get("/api/dlq/entries", params={"status": "gone"})
    assert (bad.status_code, bad.json()["field"]) == (422, "query.status")
    cursor = stack.http.get("/api/dlq/entries", params={"cursor": "nope"})
    assert (cursor.status_code, cursor.json()["field"]) == (422, "cursor")


def test_list_get_delete_and_purge_over_http(stack: DlqStack) -> None:
    ids = []
    for n in range(5):
        body = json.dumps(failure_callback(f"msg_listed_{n}", job="dlq.toggle")).encode()
        ids.append(post_callback(stack, body, sign(body)).json()["id"])
    first = stack.http.get("/api/dlq/entries", params={"job": "dlq.toggle", "limit": 3}).json()
    rest = stack.http.get("/api/dlq/entries", params={"job": "dlq.toggle", "cursor": first["next_cursor"]}).json()
    listed = [e["id"] for e in first["entries"] + rest["entries"]]
    assert set(ids) <= set(listed) and len(listed) == len(set(listed))
    assert set(first["entries"][0]) >= {"id", "job", "message_id", "attempts", "status", "error", "body",
                                         "failed_at", "redriven_as"}  # fmt: skip
    assert stack.http.delete(f"/api/dlq/entries/{ids[0]}").json() == {"deleted": True}
    assert stack.http.get(f"/api/dlq/entries/{ids[0]}").status_code == 404
    assert stack.http.delete(f"/api/dlq/entries/{ids[0]}").status_code == 404
    purged = stack.http.post("/api/dlq/purge", json={"job": "dlq.toggle", "status": "dead"}).json()
    assert purged["purged"] >= 4
    assert stack.http.get("/api/dlq/entries", params={"job": "dlq.toggle", "status": "dead"}).json()["entries"] == []


def dead_toggle(stack: DlqStack, redis: Redis, flag: str) -> tuple[str, str]:
    """A run of dlq.toggle that died (its flag said "fail"); (its message id, its entry id)."""
    redis.set(flag, "fail")
    message_id = stack.enqueue("dlq.toggle", {"flag": flag})
    stack.wait_for_entry(entry_id(message_id))
    redis.set(flag, "ok")
    return message_id, entry_id(message_id)


def test_redrive_publishes_an_entry_once_even_when_asked_twice_at_once(stack: DlqStack, redis: Redis) -> None:
    flag = f"flag-{uuid.uuid4().hex}"
    _, id_ = dead_toggle(stack, redis, flag)
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(4)

    def redrive() -> None:
        start.wait()
        with httpx.Client(base_url=stack.functions.url, headers=stack.http.headers, timeout=30) as client:
            response = client.post("/api/dlq/redrive", json={"ids": [id_]})
            assert response.status_code == 200, response.text
            answers.append(response.json())

    threads = [threading.Thread(target=redrive) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    new_ids = [m for answer in answers for m in answer["message_ids"]]
    assert len(answers) == 4 and len(new_ids) == 1  # one claimed it; the others were told why not
    assert {s["reason"] for a in answers for s in a["skipped"]} <= {"busy", "already redriven"}
    entry = stack.wait_for_entry(id_, status="redriven")
    assert entry["redriven_as"] == new_ids[0] and entry["redriven_at"] >= entry["failed_at"]
    stack.wait_for_job_state(new_ids[0], "succeeded")
    again = stack.http.post("/api/dlq/redrive", json={"ids": [id_]}).json()
    assert again["message_ids"] == [] and again["skipped"] == [{"id": id_, "reason": "already redriven"}]
    assert eventually(lambda: redis.get(flag + ":runs"), lambda runs: runs == "1") == "1"


def test_redrive_gives_the_claim_back_when_qstash_is_down(stack: DlqStack, redis: Redis) -> None:
    flag = f"flag-{uuid.uuid4().hex}"
    _, id_ = dead_toggle(stack, redis, flag)
    broken = start_dlq_stack(stack.gateway, QSTASH_URL=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        refused = broken.http.post("/api/dlq/redrive", json={"ids": [id_]})
        assert refused.status_code == 503, refused.text
    finally:
        broken.stop()
    assert stack.wait_for_entry(id_)["status"] == "dead"  # nothing was published: the claim was undone
    redriven = stack.http.post("/api/dlq/redrive", json={"ids": [id_]}).json()
    assert len(redriven["message_ids"]) == 1
    stack.wait_for_job_state(redriven["message_ids"][0], "succeeded")


def test_redrive_by_filter_takes_the_dead_entries_that_match(stack: DlqStack, redis: Redis) -> None:
    flags = [f"flag-{uuid.uuid4().hex}" for _ in range(2)]
    ids = {dead_toggle(stack, redis, flag)[1] for flag in flags}
    stack.http.post("/api/dlq/purge", json={"job": "dlq.fails"})
    report = stack.http.post("/api/dlq/redrive", json={"filter": {"job": "dlq.toggle"}, "limit": 100}).json()
    assert ids <= {r["id"] for r in report["redriven"]} and report["more"] is False
    for flag in flags:
        assert eventually(functools.partial(redis.get, flag + ":runs"), lambda runs: runs == "1", WAIT_S) == "1"
    assert stack.http.post("/api/dlq/redrive", json={"filter": {"job": "dlq.toggle"}}).json()["message_ids"] == []


def test_redrive_needs_ids_or_a_filter(stack: DlqStack) -> None:
    for body in ({}, {"ids": ["dl_" + "0" * 24], "filter": {}}):
        response = stack.http.post("/api/dlq/redrive", json=body)
        assert (response.status_code, response.json()["field"]) == (422, "body.ids")


def in_qstash_dlq(client: QStash, message_id: str) -> bool:
    return bool(client.dlq.list(filter={"message_id": message_id}).messages)


def test_reconcile_finds_an_entry_whose_callback_never_arrived(stack: DlqStack) -> None:
    client = stack.qstash.client()
    try:  # published straight to the job, with no failure callback: only QStash's DLQ will know
        lost = publish_one(client, f"{PUBLIC_URL}/api/jobs/dlq.fails", as_json=True, body={"lost": True}, retries=0)
        other = publish_one(client, f"{PUBLIC_URL}/elsewhere", body=b"x", retries=0)  # not a job: ignored
        for message_id in (lost, other):
            wait_until(functools.partial(in_qstash_dlq, client, message_id), WAIT_S, f"{message_id} in the DLQ")
    finally:
        client.http._client.close()
    assert stack.entry(entry_id(lost)) is None
    counts = stack.http.post("/api/dlq/reconcile").json()
    assert counts["recorded"] >= 1 and counts["ignored"] >= 1
    assert counts["seen"] == counts["recorded"] + counts["known"] + counts["ignored"]
    entry = stack.entry(entry_id(lost))
    assert entry is not None and entry["job"] == "dlq.fails" and json.loads(entry["body"]) == {"lost": True}
    assert entry["attempts"] == 1 and "boom" in entry["error"]
    assert stack.job_state(lost) == "dead"
    assert stack.entry(entry_id(other)) is None
    again = stack.http.post("/api/dlq/reconcile").json()
    assert again["known"] >= counts["recorded"] and stack.entry(entry_id(lost)) == entry  # known: unchanged


def test_openapi_documents_every_route(stack: DlqStack) -> None:
    document = httpx.get(f"{stack.functions.url}/api/dlq/openapi.json", timeout=30).json()
    assert set(document["paths"]) == {"/api/dlq/callback", "/api/dlq/entries", "/api/dlq/entries/{id}",
                                      "/api/dlq/purge", "/api/dlq/redrive", "/api/dlq/reconcile"}  # fmt: skip
    assert "401" in document["paths"]["/api/dlq/callback"]["post"]["responses"]


def test_the_command_line_lists_redrives_and_reconciles(stack: DlqStack, redis: Redis) -> None:
    flag = f"flag-{uuid.uuid4().hex}"
    _, id_ = dead_toggle(stack, redis, flag)
    listed = stack.cli("dlq", "list", "--job", "dlq.toggle", "--status", "dead", "--limit", "100")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert id_ in [e["id"] for e in json.loads(listed.stdout)["entries"]]
    redriven = stack.cli("dlq", "redrive", id_)
    assert redriven.returncode == 0 and redriven.stderr == "", redriven.stderr
    message_ids = json.loads(redriven.stdout)["message_ids"]
    assert len(message_ids) == 1
    stack.wait_for_job_state(message_ids[0], "succeeded")
    again = json.loads(stack.cli("dlq", "redrive", id_).stdout)
    assert again["skipped"] == [{"id": id_, "reason": "already redriven"}]
    reconciled = stack.cli("dlq", "reconcile")
    assert reconciled.returncode == 0 and set(json.loads(reconciled.stdout)) == {"seen", "recorded", "known", "ignored"}
    bad = stack.cli("dlq", "list", "--cursor", "nope")
    assert (bad.returncode, bad.stderr) == (1, "error: cursor is not a cursor this API returned\n")
    assert stack.cli("dlq", "list", "--status", "gone").returncode == 2  # a usage error, from argparse
