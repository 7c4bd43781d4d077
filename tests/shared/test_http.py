"""The function framework (shared/http.py): what every function's callers and operators rely on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import msgspec
import pytest
from mangum.handlers import ALB, APIGateway, HTTPGateway
from mangum.types import LambdaConfig
from starlette.applications import Starlette
from starlette.requests import Request

from shared.config import HttpSettings, RedisSettings
from shared.errors import NotFound
from shared.http import Api, client_ip, create_app
from shared.redis import RedisClients
from tests.conftest import Gateway
from tests.functions.events import lambda_event
from tests.servers import free_port


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
    redis = request.app.state.redis.get()
    await redis.set("{demo}:k", "v")
    return {"value": await redis.get("{demo}:k")}


@api.get("/api/demo/ip", summary="the caller's address")
async def address(request: Request) -> dict[str, object]:
    return {"ip": client_ip(request)}


@api.delete("/api/demo/items/{item}", summary="admin only", path_params=ItemPath, admin=True)
async def remove(request: Request, path: ItemPath) -> dict[str, object]:
    return {"removed": path.item}


NO_CONTEXT: Any = None  # the Lambda context object; building a scope never reads it
MANGUM_CONFIG = LambdaConfig(api_gateway_base_path="/", text_mime_types=[], exclude_headers=[])
SETTINGS = HttpSettings(max_body_bytes=1024, admin_token="admin-secret")


async def serve(app: Starlette, redis: RedisClients) -> AsyncIterator[httpx.AsyncClient]:
    app.state.redis = redis
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await redis.aclose()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    redis = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=2)
    async for http in serve(create_app(api, settings=SETTINGS), redis):
        yield http


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


async def test_a_bad_setting_is_a_problem_with_a_request_id_and_a_log_line(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """Settings are read once, on the first request, inside the one catch site."""
    monkeypatch.setenv("STASHKIT_MAX_BODY_BYTES", "abc")
    redis = RedisClients(RedisSettings(gateway.url, gateway.token))
    async for http in serve(create_app(api), redis):
        response = await http.get("/api/demo/items/tea", headers={"x-request-id": "bad-setting"})
        body = is_problem(response, 500)
        assert body["request_id"] == response.headers["x-request-id"] == "bad-setting"
        assert "abc" not in response.text and "STASHKIT" not in response.text
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "bad-setting" in line]
        assert [(line["status"], line["error"]) for line in lines] == [(500, "ConfigurationError")]
        assert "STASHKIT_MAX_BODY_BYTES" in lines[0]["detail"]
        monkeypatch.setenv("STASHKIT_MAX_BODY_BYTES", "2048")  # mended: the next request reads it again
        assert (await http.get("/api/demo/items/tea")).status_code == 200


async def test_an_unreachable_redis_is_a_503_problem(capsys: pytest.CaptureFixture[str]) -> None:
    down = RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=1)
    async for http in serve(create_app(api, settings=SETTINGS), down):
        response = await http.get("/api/demo/redis", headers={"x-request-id": "redis-down"})
        assert is_problem(response, 503)["title"] == "Service unavailable"
        assert response.headers["retry-after"] == "1"
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "redis-down" in line]
        assert [(line["status"], line["error"]) for line in lines] == [(503, "RedisUnavailable")]


def ip_seen(scope: Mapping[str, Any], settings: HttpSettings = SETTINGS) -> str:
    return client_ip(Request({**scope, "stashkit.settings": settings}))


@pytest.mark.parametrize("kind", ["http_api_v2", "function_url", "api_gateway_rest_v1"])
def test_client_ip_on_lambda_is_the_source_ip_aws_saw_never_a_forwarded_header(kind: str) -> None:
    event = lambda_event(kind, "/api/demo/ip")
    event["headers"]["x-forwarded-for"] = "6.6.6.6"  # what a caller can send
    context = event["requestContext"]
    source = context["http"]["sourceIp"] if "http" in context else context["identity"]["sourceIp"]
    handler = HTTPGateway if "version" in event else APIGateway
    scope = handler(event, NO_CONTEXT, MANGUM_CONFIG).scope
    assert ip_seen(scope) == source != "6.6.6.6"


def test_client_ip_behind_an_alb_is_the_hop_the_alb_appended() -> None:
    event = lambda_event("alb_multi_value_headers", "/api/demo/ip")
    event["multiValueHeaders"]["x-forwarded-for"] = ["6.6.6.6, 203.0.113.7"]
    assert ip_seen(ALB(event, NO_CONTEXT, MANGUM_CONFIG).scope) == "203.0.113.7"


def test_client_ip_on_vercel_is_the_forwarded_header_its_edge_writes_and_elsewhere_the_peer() -> None:
    scope = {"type": "http", "headers": [(b"x-forwarded-for", b"198.51.100.4")], "client": ("127.0.0.1", 5000)}
    assert ip_seen(scope, HttpSettings(on_vercel=True)) == "198.51.100.4"
    assert ip_seen(scope, HttpSettings(on_vercel=False)) == "127.0.0.1"
