"""functions/ratelimit.py over HTTP, served as deployed, against the real gateway and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Functions, function_environment, start_functions, start_gateway
from tests.servers import redis_server


@pytest.fixture
def http(functions: Functions) -> Iterator[httpx.Client]:
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


def test_remaining_reads_without_consuming_and_admin_reset(http: httpx.Client, functions: Functions) -> None:
    who = key()
    check(http, "api", who, cost=2)
    for _ in range(2):
        assert http.get(f"/api/ratelimit/api/{who}").json()["remaining"] == 1
    assert http.delete(f"/api/ratelimit/api/{who}").status_code == 401
    assert http.delete(f"/api/ratelimit/api/{who}", headers=functions.admin()).json() == {"reset": True}
    assert http.get(f"/api/ratelimit/api/{who}").json()["remaining"] == 3


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
    assert http.get("/api/ratelimit/api/k").json()["remaining"] == 3


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
        with httpx.Client(base_url=server.url, timeout=10) as http:
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
