"""The @rate_limit decorator on a function's handler: headers, 429 problems, leases released."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request

from shared import redis as shared_redis
from shared.config import RedisSettings
from shared.http import Api, create_app
from shared.ratelimit.http import by_header, by_route, combine, rate_limit
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import Limit, Policy
from shared.redis import RedisClients
from tests.conftest import Gateway

limiter = RateLimiter(
    {
        "demo": Policy(limits=[Limit("fixed_window", 2, 60)], timeout_ms=5000),
        "one-at-a-time": Policy(limits=[Limit("fixed_window", 100, 60)], concurrency=1, timeout_ms=5000),
    }
)
api = Api("limited", title="Limited")


@api.get("/api/limited/thing", summary="limited by API key")
@rate_limit("demo", key=combine(by_header("x-api-key"), by_route), limiter=lambda: limiter)
async def thing(request: Request) -> dict[str, str]:
    return {"ok": "yes"}


@api.get("/api/limited/serial", summary="one request at a time per key")
@rate_limit("one-at-a-time", key=by_header("x-api-key"), limiter=lambda: limiter)
async def serial(request: Request) -> dict[str, str]:
    return {"ok": "serial"}


app = create_app(api)


@pytest.fixture
async def client(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=5)
    monkeypatch.setattr(shared_redis, "_default", clients)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await clients.aclose()


async def test_limited_handler_gets_headers_then_a_429_problem(client: httpx.AsyncClient, tag: str) -> None:
    headers = {"x-api-key": f"{tag}key"}
    first = await client.get("/api/limited/thing", headers=headers)
    assert first.json() == {"ok": "yes"}
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == "2;w=60"
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
