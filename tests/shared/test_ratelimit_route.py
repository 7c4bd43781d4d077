"""A rate limit declared on a function's route: headers, 429 problems, leases released, the OpenAPI, and
errors that stay errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

from shared import keys
from shared.config import HttpSettings
from shared.http import Api, create_app
from shared.ratelimit.http import RateLimit, by_header, by_route, combine
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import Limit, Policy
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients

POLICIES = {
    "demo": Policy(limits=[Limit("fixed_window", 2, 60)], timeout_ms=5000),
    "one-at-a-time": Policy(limits=[Limit("fixed_window", 100, 60)], concurrency=1, timeout_ms=5000),
    "open": Policy(limits=[Limit("fixed_window", 100, 60)], outage="fail_open", timeout_ms=5000),
}
by_key = by_header("x-api-key")


def limited_api(limiter: RateLimiter) -> Api:
    api = Api("limited", title="Limited")

    @api.get(
        "/api/limited/thing",
        summary="limited by API key",
        limit=RateLimit("demo", key=combine(by_key, by_route), limiter=lambda: limiter),
    )
    async def thing(request: Request) -> dict[str, str]:
        return {"ok": "yes"}

    @api.get(
        "/api/limited/serial",
        summary="one request at a time per key",
        limit=RateLimit("one-at-a-time", key=by_key, limiter=lambda: limiter),
    )
    async def serial(request: Request) -> dict[str, str]:
        return {"ok": "serial"}

    @api.get("/api/limited/open", summary="fail open", limit=RateLimit("open", key=by_key, limiter=lambda: limiter))
    async def open_route(request: Request) -> dict[str, str]:
        return {"ok": "open"}

    return api


@pytest.fixture
async def redis(gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(gateway, timeout_s=5) as clients:
        yield clients


@pytest.fixture
def api(redis: RedisClients) -> Api:
    return limited_api(RateLimiter(POLICIES, redis=redis.get))


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api, settings=HttpSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def test_limited_route_gets_headers_then_a_429_problem(client: httpx.AsyncClient, tag: str) -> None:
    headers = {"x-api-key": f"{tag}key"}
    first = await client.get("/api/limited/thing", headers=headers)
    assert first.json() == {"ok": "yes"}
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == "2;w=60"
    assert 0 < int(first.headers["ratelimit-reset"]) <= 60
    await client.get("/api/limited/thing", headers=headers)
    third = await client.get("/api/limited/thing", headers=headers)
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert int(third.headers["retry-after"]) > 0
    other_key = await client.get("/api/limited/thing", headers={"x-api-key": f"{tag}other"})
    assert other_key.status_code == 200


async def test_lease_is_released_when_the_handler_ends(client: httpx.AsyncClient, tag: str) -> None:
    headers = {"x-api-key": f"{tag}serial"}
    for _ in range(3):  # one at a time, but sequential requests never collide
        assert (await client.get("/api/limited/serial", headers=headers)).status_code == 200


async def test_the_limit_is_part_of_the_route_and_its_openapi(api: Api, client: httpx.AsyncClient) -> None:
    """Declared as an argument of the route, a limit cannot be dropped by the order of decorators
    (the old `@rate_limit` placed above `@api.get` silently registered the unlimited handler)."""
    assert all(op.limit is not None for op in api.operations)
    document = (await client.get("/api/limited/openapi.json")).json()
    responses = document["paths"]["/api/limited/thing"]["get"]["responses"]
    assert {"200", "403", "429", "503"} <= responses.keys()
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= responses["200"]["headers"].keys()
    assert responses["429"]["content"]["application/problem+json"]


async def test_a_wrong_type_key_is_a_logged_500_not_a_fail_open_allow(
    client: httpx.AsyncClient, redis: RedisClients, capsys: pytest.CaptureFixture[str], tag: str
) -> None:
    who, request_id = f"{tag}broken", f"wrongtype-{uuid.uuid4().hex}"
    await redis.get().set(keys.ratelimit_state("open", who), "not a hash")
    response = await client.get("/api/limited/open", headers={"x-api-key": who, "x-request-id": request_id})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "WRONGTYPE" not in response.text and "Traceback" not in response.text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if request_id in line]
    assert [(line["status"], line["error"]) for line in lines] == [(500, "UpstashError")]
    assert "WRONGTYPE" in lines[0]["traceback"]
