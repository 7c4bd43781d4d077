"""functions/ratelimit.py over HTTP, served as deployed, against the real gateway and Redis.

The service is closed: `http` carries the rate-limit service token, `anonymous` carries nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from upstash_redis import Redis

from shared import keys
from tests.conftest import Functions, Gateway, function_environment, start_functions, start_gateway
from tests.servers import redis_server


@pytest.fixture
def http(functions: Functions) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=functions.url, timeout=10, headers=functions.service()) as client:
        yield client


@pytest.fixture
def anonymous(functions: Functions) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=functions.url, timeout=10) as client:
        yield client


def key() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def check(http: httpx.Client, policy: str, who: str, cost: int = 1) -> httpx.Response:
    return http.post("/api/ratelimit/check", json={"policy": policy, "key": who, "cost": cost})


def test_allowed_decisions_carry_the_ietf_headers(http: httpx.Client) -> None:
    response = check(http, "api", key())
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is True
    assert body["remaining"] == 2
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "2"
    assert 0 < int(response.headers["ratelimit-reset"]) <= 60
    assert response.headers["ratelimit-policy"] == "3;w=60, 100;w=3600"


def test_denied_is_429_problem_with_retry_after(http: httpx.Client) -> None:
    who = key()
    for _ in range(3):
        assert check(http, "api", who).status_code == 200
    denied = check(http, "api", who)
    assert denied.status_code == 429
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["title"] == "Too many requests"
    assert 0 < int(denied.headers["retry-after"]) <= 60
    assert denied.headers["ratelimit-remaining"] == "0"


def test_peek_answers_what_the_next_check_gets_and_admin_reset(http: httpx.Client, functions: Functions) -> None:
    who = key()
    check(http, "api", who, cost=2)
    for _ in range(2):  # consumes nothing: the next check is allowed and leaves 0
        peek = http.get(f"/api/ratelimit/api/{who}").json()
        assert (peek["allowed"], peek["remaining"]) == (True, 0)
    assert check(http, "api", who).json()["remaining"] == 0
    exhausted = http.get(f"/api/ratelimit/api/{who}")
    assert (exhausted.json()["allowed"], exhausted.json()["reason"]) == (False, "limit")
    assert exhausted.json()["retry_after_ms"] > 0
    assert check(http, "api", who).status_code == 429  # as the peek said
    assert http.delete(f"/api/ratelimit/api/{who}").status_code == 401
    assert http.delete(f"/api/ratelimit/api/{who}", headers=functions.admin()).json() == {"reset": True}
    assert http.get(f"/api/ratelimit/api/{who}").json()["remaining"] == 2


def test_refund_tiers_and_deny_list(http: httpx.Client) -> None:
    who = key()
    check(http, "api", who, cost=3)
    assert check(http, "api", who, cost=-2).json()["remaining"] == 2
    assert check(http, "api", f"pk_pro_{key()}").json()["tier"] == "pro"
    banned = check(http, "api", "banned")
    assert banned.status_code == 403
    assert banned.json()["field"] == "key"


def test_concurrency_lease_release(http: httpx.Client) -> None:
    who = key()
    lease = check(http, "uploads", who).json()["lease"]
    assert check(http, "uploads", who).json()["title"] == "Too many requests"
    assert http.get(f"/api/ratelimit/uploads/{who}").json()["reason"] == "concurrency"
    released = http.post("/api/ratelimit/release", json={"policy": "uploads", "key": who, "lease": lease})
    assert released.json() == {"released": True}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"policy": "nope", "key": "k"}, 404, "policy"),
        ({"policy": "api", "key": "k", "cost": 10_000}, 422, "cost"),
        ({"policy": "api", "key": "k" * 300}, 422, "body.key"),
        ({"policy": "api", "key": ""}, 422, "body.key"),
        ({"policy": "api"}, 422, "body.key"),
        ({"policy": "api", "key": "k", "cost": "1"}, 422, "body.cost"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_counts_nothing(
    http: httpx.Client, body: dict[str, object], status: int, field: str
) -> None:
    response = http.post("/api/ratelimit/check", json=body)
    assert response.status_code == status
    assert response.json()["field"] == field
    assert http.get("/api/ratelimit/api/k").json()["remaining"] == 2  # the next check leaves 2 of 3


def test_analytics_are_admin_only_and_count_decisions(http: httpx.Client, functions: Functions) -> None:
    assert http.get("/api/ratelimit/analytics", params={"policy": "login"}).status_code == 401
    who = key()
    for _ in range(3):
        check(http, "login", who)
    minutes = http.get(
        "/api/ratelimit/analytics", params={"policy": "login", "minutes": 2}, headers=functions.admin()
    ).json()["minutes"]
    assert sum(m["allowed"] for m in minutes) >= 2
    assert sum(m["denied"] for m in minutes) >= 1


def test_openapi_lists_every_endpoint(http: httpx.Client) -> None:
    paths = http.get("/api/ratelimit/openapi.json").json()["paths"]
    assert set(paths) == {
        "/api/ratelimit/check",
        "/api/ratelimit/release",
        "/api/ratelimit/analytics",
        "/api/ratelimit/{policy}/{key}",
    }


def test_outage_fail_open_allows_fail_closed_refuses_then_both_recover() -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    server = start_functions(function_environment(gateway))
    try:
        with httpx.Client(base_url=server.url, timeout=10, headers=server.service()) as http:
            who = key()
            assert check(http, "login", who).status_code == 200
            node.stop()
            opened = check(http, "open", who)
            assert opened.status_code == 200
            assert opened.json()["degraded"] is True
            closed = check(http, "login", who)
            assert closed.status_code == 503
            assert closed.headers["content-type"] == "application/problem+json"
            node = redis_server(node.port).start()
            # A memory-only Redis came back empty: one request used of two.
            assert check(http, "login", who).json()["remaining"] == 1
            assert check(http, "open", who).json()["degraded"] is False
    finally:
        server.process.stop()
        gateway.process.stop()
        node.stop()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/ratelimit/check", {"policy": "login", "key": "alice"}),
        ("POST", "/api/ratelimit/check", {"policy": "nope", "key": "alice"}),
        ("POST", "/api/ratelimit/release", {"policy": "uploads", "key": "alice", "lease": "x"}),
        ("GET", "/api/ratelimit/login/alice", None),
    ],
)
def test_anonymous_callers_can_neither_spend_nor_read_nor_release_a_key(
    anonymous: httpx.Client, http: httpx.Client, method: str, path: str, body: dict[str, object] | None
) -> None:
    who = key()
    path = path.replace("alice", who)
    if body is not None:
        body = {k: who if v == "alice" else v for k, v in body.items()}
    for _ in range(3):
        refused = anonymous.request(method, path, json=body)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "policy" not in refused.json().get("field", "")  # nothing about which policies exist
    wrong_token = anonymous.request(method, path, json=body, headers={"Authorization": "Bearer guess"})
    assert wrong_token.status_code == 401
    assert http.get(f"/api/ratelimit/login/{who}").json()["remaining"] == 1  # untouched: 2 - the next check


def test_anonymous_callers_of_a_public_policy_are_keyed_by_their_address_and_cannot_refund(
    anonymous: httpx.Client, http: httpx.Client
) -> None:
    """`signup` is public: anyone may check it, for their own address (here the TCP peer; a spoofed
    X-Forwarded-For changes nothing off Vercel), never for a key they choose, never at a negative cost."""
    chose_key = anonymous.post("/api/ratelimit/check", json={"policy": "signup", "key": "someone-else"})
    assert (chose_key.status_code, chose_key.json()["field"]) == (401, "body.key")
    refund = anonymous.post("/api/ratelimit/check", json={"policy": "signup", "cost": -5})
    assert (refund.status_code, refund.json()["field"]) == (401, "body.cost")
    first = anonymous.post("/api/ratelimit/check", json={"policy": "signup"})
    assert (first.status_code, first.json()["remaining"]) == (200, 1)
    spoofed = anonymous.post("/api/ratelimit/check", json={"policy": "signup"}, headers={"X-Forwarded-For": "1.2.3.4"})
    assert (spoofed.status_code, spoofed.json()["remaining"]) == (200, 0)
    assert anonymous.post("/api/ratelimit/check", json={"policy": "signup"}).status_code == 429
    assert http.get("/api/ratelimit/signup/ip:127.0.0.1").json()["allowed"] is False


def test_a_key_of_the_wrong_type_is_a_500_problem_not_a_fail_open_allow(http: httpx.Client, gateway: Gateway) -> None:
    who = key()
    with Redis(gateway.url, gateway.token) as redis:
        redis.set(keys.ratelimit_state("open", who), "not a hash")
    response = check(http, "open", who)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
