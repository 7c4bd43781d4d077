"""The function framework (shared/http.py): what every function's callers and operators rely on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from starlette.requests import Request

from shared import redis as shared_redis
from shared.config import RedisSettings
from shared.errors import NotFound
from shared.http import Api, create_app
from shared.redis import RedisClients, get_redis
from tests.conftest import Gateway


class Order(msgspec.Struct, forbid_unknown_fields=True):
    item: str
    quantity: int = 1


class Paging(msgspec.Struct):
    limit: int = 10


class ItemPath(msgspec.Struct):
    item: str


api = Api("demo", title="Demo")


@api.post("/api/demo/orders", summary="place an order", body=Order, responses={200: Order})
async def place(request: Request, body: Order) -> Order:
    return body


@api.get("/api/demo/items/{item}", summary="read an item", path_params=ItemPath, query=Paging)
async def item(request: Request, path: ItemPath, query: Paging) -> dict[str, object]:
    if path.item == "missing":
        raise NotFound("no item named missing")
    if path.item == "crash":
        raise RuntimeError("secret internals")
    return {"item": path.item, "limit": query.limit}


@api.get("/api/demo/redis", summary="two Redis calls")
async def two_calls(request: Request) -> dict[str, object]:
    redis = get_redis()
    await redis.set("{demo}:k", "v")
    return {"value": await redis.get("{demo}:k")}


@api.delete("/api/demo/items/{item}", summary="admin only", path_params=ItemPath, admin=True)
async def remove(request: Request, path: ItemPath) -> dict[str, object]:
    return {"removed": path.item}


app = create_app(api)


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("STASHKIT_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("STASHKIT_MAX_BODY_BYTES", "1024")
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=2)
    monkeypatch.setattr(shared_redis, "_default", clients)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await clients.aclose()


def is_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert {"type", "title", "status", "detail", "request_id"} <= body.keys()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


async def test_valid_body_is_parsed_and_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/demo/orders", json={"item": "tea"})
    assert response.status_code == 200
    assert response.json() == {"item": "tea", "quantity": 1}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"item": 5}', 422, "body.item"),
        (b'{"quantity": 2}', 422, "body.item"),
        (b'{"item": "tea", "extra": 1}', 422, "body.extra"),
        (b'{"item": ', 400, "body"),
        (b"", 400, "body"),
    ],
)
async def test_bad_body_names_the_field(client: httpx.AsyncClient, body: bytes, status: int, field: str) -> None:
    response = await client.post("/api/demo/orders", content=body)
    assert is_problem(response, status)["field"] == field


async def test_path_and_query_are_validated(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/demo/items/tea?limit=5")).json() == {"item": "tea", "limit": 5}
    assert is_problem(await client.get("/api/demo/items/tea?limit=many"), 422)["field"] == "query.limit"


async def test_errors_are_problem_details_without_internals(client: httpx.AsyncClient) -> None:
    assert is_problem(await client.get("/api/demo/items/missing"), 404)["detail"] == "no item named missing"
    crash = is_problem(await client.get("/api/demo/items/crash"), 500)
    assert "secret internals" not in json.dumps(crash)
    is_problem(await client.get("/api/demo/nowhere"), 404)
    is_problem(await client.put("/api/demo/orders"), 405)


async def test_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/demo/orders", content=b'{"item": "' + b"x" * 2000 + b'"}')
    is_problem(response, 413)


async def test_request_id_is_kept_or_made(client: httpx.AsyncClient) -> None:
    given = await client.get("/api/demo/items/tea", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/api/demo/items/tea", headers={"x-request-id": "bad id\twith junk"})
    assert len(made.headers["x-request-id"]) == 32


async def test_admin_route_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    assert is_problem(await client.delete("/api/demo/items/tea"), 401)
    wrong = await client.delete("/api/demo/items/tea", headers={"Authorization": "Bearer nope"})
    assert is_problem(wrong, 401)
    assert wrong.headers["www-authenticate"] == "Bearer"
    right = await client.delete("/api/demo/items/tea", headers={"Authorization": "Bearer admin-secret"})
    assert right.json() == {"removed": "tea"}


async def test_one_json_log_line_per_request_with_round_trips(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.get("/api/demo/redis", headers={"x-request-id": "log-check", "Authorization": "Bearer admin-secret"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "log-check" in line]
    assert len(lines) == 1
    assert lines[0] | {"duration_ms": 0} == {
        "function": "demo", "method": "GET", "route": "/api/demo/redis", "status": 200, "duration_ms": 0,
        "redis_round_trips": 2, "request_id": "log-check",
    }  # fmt: skip
    assert "admin-secret" not in json.dumps(lines)


async def test_openapi_document_is_generated_from_the_same_types(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/demo/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    order = document["paths"]["/api/demo/orders"]["post"]
    assert order["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    assert document["components"]["schemas"]["Order"]["required"] == ["item"]
    params = document["paths"]["/api/demo/items/{item}"]["get"]["parameters"]
    assert {(p["name"], p["in"]) for p in params} == {("item", "path"), ("limit", "query")}
    assert document["paths"]["/api/demo/items/{item}"]["delete"]["security"] == [{"adminToken": []}]


async def test_trailing_slash_is_a_404_problem_not_a_redirect(client: httpx.AsyncClient) -> None:
    is_problem(await client.post("/api/demo/orders/", json={"item": "tea"}), 404)
