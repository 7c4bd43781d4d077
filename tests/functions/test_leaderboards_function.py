"""functions/leaderboards.py over HTTP, served as deployed, with a private Redis and gateway (so round
trips can be counted exactly) and boards of its own in STASHKIT_LEADERBOARDS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.leaderboards.auth import signature
from tests.conftest import ADMIN_TOKEN, TEST_POLICIES, Gateway, function_environment, start_functions, start_gateway
from tests.servers import redis_server

SUBMIT_KEY = "server-key-0123456789"
OLD_KEY = "server-key-retiring-0"
SECRET = "client-secret-0123456789"
BOARDS = {
    "arena": {"order": "desc", "policy": "best", "min_score": 0, "max_score": 1_000_000, "periods": ["daily", "weekly"],
              "ratelimit": "lb_test", "submit_keys": [SUBMIT_KEY, OLD_KEY], "signing_secrets": [SECRET]},
    "open": {"ratelimit": None, "submit_keys": [SUBMIT_KEY], "periods": ["daily", "weekly", "monthly"]},
}  # fmt: skip
POLICIES = TEST_POLICIES | {"lb_test": {"limits": [{"algorithm": "fixed_window", "limit": 3, "window_s": 60}]}}


@dataclass
class Stack:
    http: httpx.Client
    gateway: Gateway


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    env = function_environment(gateway) | {
        "STASHKIT_LEADERBOARDS": json.dumps(BOARDS),
        "STASHKIT_RATELIMIT_POLICIES": json.dumps(POLICIES),
    }
    functions = start_functions(env)
    try:
        with httpx.Client(base_url=functions.url, timeout=10) as client:
            yield Stack(client, gateway)
    finally:
        functions.process.stop()
        gateway.process.stop()
        node.stop()


def member() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def submit(stack: Stack, board: str, body: dict[str, Any], key: str = SUBMIT_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return stack.http.post(f"/api/leaderboards/{board}/scores", json=body, headers=headers)


def signed(stack: Stack, body: dict[str, Any], secret: str = SECRET, *, at: float | None = None,
           tamper: bool = False) -> httpx.Response:  # fmt: skip
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time() if at is None else at))
    headers = {"X-Timestamp": timestamp, "X-Signature": signature(secret, timestamp, raw),
               "Content-Type": "application/json"}  # fmt: skip
    sent = raw.replace(b'"score": 10', b'"score": 99') if tamper else raw
    return stack.http.post("/api/leaderboards/arena/scores", content=sent, headers=headers)


def score(who: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"member": who, "score": value, "submission_id": uuid.uuid4().hex, **extra}


def test_submit_answers_per_period_and_a_replay_changes_nothing(stack: Stack) -> None:
    who = member()
    body = score(who, 1200, data={"avatar": "fox"})
    first = submit(stack, "arena", body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert set(answer["periods"]) == {"all", "daily", "weekly"}
    standing = answer["periods"]["all"]
    assert (standing["window"], standing["member"], standing["score"], standing["improved"]) == ("all", who, 1200, True)
    assert standing["rank"] >= 1
    assert first.headers["ratelimit-limit"] == "3"
    replay = submit(stack, "arena", body | {"score": 5})
    assert replay.json()["replayed"] is True and replay.json()["periods"] == answer["periods"]
    view = stack.http.get(f"/api/leaderboards/arena/members/{who}").json()
    assert (view["score"], view["data"]) == (1200, {"avatar": "fox"})


def test_signed_submissions_are_checked_before_anything_changes(stack: Stack) -> None:
    who = member()
    assert signed(stack, score(who, 10)).status_code == 200
    other = member()
    refused = [
        signed(stack, score(other, 10), secret="not-the-secret-0000"),
        signed(stack, score(other, 10), tamper=True),
        signed(stack, score(other, 10), at=time.time() - 301),
        stack.http.post("/api/leaderboards/arena/scores", json=score(other, 10)),
        submit(stack, "arena", score(other, 10), key="wrong-key-0123456789"),
    ]
    assert [r.status_code for r in refused] == [401] * 5
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert ["www-authenticate" in r.headers for r in refused] == [False, False, False, True, True]
    assert stack.http.get(f"/api/leaderboards/arena/members/{other}").status_code == 404
    assert submit(stack, "arena", score(member(), 1), key=OLD_KEY).status_code == 200  # rotation


def test_submissions_are_rate_limited_per_member(stack: Stack) -> None:
    who = member()
    assert [submit(stack, "arena", score(who, i)).status_code for i in range(3)] == [200] * 3
    denied = submit(stack, "arena", score(who, 99))
    assert denied.status_code == 429 and int(denied.headers["retry-after"]) > 0
    assert submit(stack, "arena", score(member(), 1)).status_code == 200  # another member is not held back


def test_names_bounds_and_unknown_boards_are_problems(stack: Stack) -> None:
    assert submit(stack, "nope", score(member(), 1)).status_code == 404
    assert submit(stack, "arena", score("bad name", 1)).status_code == 422
    assert submit(stack, "arena", score(member(), 1_000_001)).status_code == 422
    assert stack.http.get("/api/leaderboards/arena?period=monthly").status_code == 422
    assert stack.http.get("/api/leaderboards/arena?period=daily&window=2026-13-01").status_code == 422
    assert stack.http.get("/api/leaderboards/arena?offset=1&cursor=abc").status_code == 422
    assert stack.http.get("/api/leaderboards/nope").status_code == 404


def test_pages_by_cursor_count_and_score_range(stack: Stack) -> None:
    who = [member() for _ in range(5)]
    for i, name in enumerate(who):
        assert submit(stack, "open", score(name, 10_000 + i)).status_code == 200
    first = stack.http.get("/api/leaderboards/open?limit=3").json()
    assert [e["member"] for e in first["entries"]] == who[::-1][:3] and [e["rank"] for e in first["entries"]] == [
        1,
        2,
        3,
    ]
    rest = stack.http.get(f"/api/leaderboards/open?limit=3&cursor={first['next_cursor']}").json()
    assert [e["member"] for e in rest["entries"]] == [who[1], who[0]] and rest["next_cursor"] is None
    ranged = stack.http.get("/api/leaderboards/open?min_score=10001&max_score=10003").json()
    assert [e["score"] for e in ranged["entries"]] == [10_003, 10_002, 10_001]
    daily = stack.http.get("/api/leaderboards/open/count?period=daily").json()
    assert daily["count"] >= 5 and daily["period"] == "daily"


def test_member_around_and_admin_removal(stack: Stack) -> None:
    who = [member() for _ in range(3)]
    for i, name in enumerate(who):
        submit(stack, "open", score(name, 20_000 + i))
    view = stack.http.get(f"/api/leaderboards/open/members/{who[1]}?around=1&period=weekly").json()
    assert [e["member"] for e in view["around"]] == [who[2], who[1], who[0]]
    assert stack.http.delete(f"/api/leaderboards/open/members/{who[2]}").status_code == 401
    removed = stack.http.delete(f"/api/leaderboards/open/members/{who[2]}",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
    assert removed.status_code == 200 and removed.json()["windows"] == 4
    assert stack.http.get(f"/api/leaderboards/open/members/{who[2]}?period=daily").status_code == 404


def test_a_submission_and_each_read_is_one_round_trip(stack: Stack) -> None:
    who = member()
    submit(stack, "open", score(who, 1))  # loads the scripts
    stack.http.get("/api/leaderboards/open")
    stack.http.get(f"/api/leaderboards/open/members/{who}")
    before = stack.gateway.requests()
    assert submit(stack, "open", score(who, 2)).status_code == 200  # all-time and three periods
    assert stack.gateway.requests() - before == 1
    for path in ["/api/leaderboards/open?limit=50", f"/api/leaderboards/open/members/{who}?around=5",
                 "/api/leaderboards/open/count?period=monthly"]:  # fmt: skip
        before = stack.gateway.requests()
        assert stack.http.get(path).status_code == 200
        assert stack.gateway.requests() - before == 1, path
