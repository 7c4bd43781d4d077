"""functions/cache.py over HTTP against the real gateway and Redis, in front of a local origin that counts
its calls. Freshness follows Redis TIME here (the deployed behaviour), so the few tests about expiry
use one-second lifetimes and wait just past them; every path is unique to its test."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from upstash_redis import Redis

from shared.config import CACHE_ORIGINS_VAR, CACHE_VARY_VAR
from tests.conftest import Functions, Gateway, function_environment, start_functions
from tests.functions.cache_origin import CountingOrigin
from tests.functions.events import KINDS, lambda_event


@pytest.fixture(scope="module")
def origin() -> Iterator[CountingOrigin]:
    server = CountingOrigin().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(gateway: Gateway, origin: CountingOrigin) -> Iterator[Functions]:
    env = function_environment(gateway) | {
        CACHE_ORIGINS_VAR: json.dumps({"docs": f"{origin.url}/base"}),
        CACHE_VARY_VAR: "accept",
    }
    handle = start_functions(env)
    yield handle
    handle.process.stop()


@pytest.fixture
def http(proxy: Functions) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=20) as client:
        yield client


def unique() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def test_miss_then_hit_with_age_and_one_origin_call(http: httpx.Client, origin: CountingOrigin) -> None:
    name = unique()
    first = http.get(f"/api/cache/docs/{name}")
    second = http.get(f"/api/cache/docs/{name}")
    assert (first.status_code, first.headers["x-cache"], second.headers["x-cache"]) == (200, "MISS", "HIT")
    assert second.text == first.text == f"/base/{name} #1 q= accept=*/*"
    assert int(second.headers["age"]) >= 0
    assert second.headers["cache-control"] == "max-age=60"
    assert origin.calls[f"/base/{name}"] == 1


async def test_stampede_on_an_expired_key_makes_one_origin_call(proxy: Functions, origin: CountingOrigin) -> None:
    name = unique()
    origin.behave(f"/base/{name}", headers={"cache-control": "max-age=1, stale-while-revalidate=60"}, delay_s=0.3)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=60, limits=limits) as client:
        assert (await client.get(f"/api/cache/docs/{name}")).status_code == 200
        await asyncio.sleep(1.1)  # past max-age, within stale-while-revalidate
        # The refreshed copy lives long: with max-age=1 XFetch would rightly refresh it early again.
        origin.behave(f"/base/{name}", headers={"cache-control": "max-age=600"}, delay_s=0.3)
        answers = await asyncio.gather(*(client.get(f"/api/cache/docs/{name}") for _ in range(200)))
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-cache"] for a in answers} <= {"STALE", "MISS", "HIT"}
    assert origin.calls[f"/base/{name}"] == 2  # the first fill and exactly one refresh


def test_variants_by_query_and_accept_and_path_invalidation_reaches_them_all(
    http: httpx.Client, origin: CountingOrigin, proxy: Functions
) -> None:
    name = unique()
    urls = [(f"/api/cache/docs/{name}?a=1", "text/plain"), (f"/api/cache/docs/{name}", "text/html")]
    firsts = [http.get(url, headers={"accept": accept}).text for url, accept in urls]
    assert firsts[0] != firsts[1]
    assert [http.get(url, headers={"accept": a}).headers["x-cache"] for url, a in urls] == ["HIT", "HIT"]
    body = {"paths": [f"/api/cache/docs/{name}"]}
    assert http.post("/api/cache/invalidate", json=body, headers=proxy.admin()).json() == {"invalidated": 1}
    assert [http.get(url, headers={"accept": a}).headers["x-cache"] for url, a in urls] == ["MISS", "MISS"]
    assert origin.calls[f"/base/{name}"] == 4


def test_origin_cache_tags_and_keys_invalidate(http: httpx.Client, origin: CountingOrigin, proxy: Functions) -> None:
    a, b = unique(), unique()
    origin.behave(f"/base/{a}", headers={"cache-control": "max-age=60", "cache-tag": f"t-{a}, shared"})
    origin.behave(f"/base/{b}", headers={"cache-control": "max-age=60", "surrogate-key": f"t-{b}"})
    key_of_b = http.get(f"/api/cache/docs/{b}").headers["x-cache-key"]
    http.get(f"/api/cache/docs/{a}")
    http.post("/api/cache/invalidate", json={"tags": [f"t-{a}"], "keys": [key_of_b]}, headers=proxy.admin())
    assert http.get(f"/api/cache/docs/{a}").headers["x-cache"] == "MISS"
    assert http.get(f"/api/cache/docs/{b}").headers["x-cache"] == "MISS"
    assert http.post("/api/cache/invalidate", json={"tags": ["x"]}).status_code == 401


def test_stale_if_error_then_502_without_a_copy(http: httpx.Client, origin: CountingOrigin) -> None:
    name, never = unique(), unique()
    origin.behave(f"/base/{name}", headers={"cache-control": "max-age=1, stale-if-error=600"})
    first = http.get(f"/api/cache/docs/{name}")
    origin.behave(f"/base/{name}", status=503, headers={})
    time.sleep(1.1)
    stale = http.get(f"/api/cache/docs/{name}")
    assert (stale.status_code, stale.headers["x-cache"], stale.text) == (200, "STALE", first.text)
    origin.behave(f"/base/{never}", status=500, headers={})
    failed = http.get(f"/api/cache/docs/{never}")
    assert failed.status_code == 502
    assert failed.headers["content-type"] == "application/problem+json"


def test_no_store_private_and_unconfigured_vary_are_never_stored(http: httpx.Client, origin: CountingOrigin) -> None:
    for headers in ({"cache-control": "no-store"}, {"cache-control": "private, max-age=60"},
                    {"cache-control": "max-age=60", "vary": "x-tenant"}, {"cache-control": "max-age=60",
                    "set-cookie": "a=b"}):  # fmt: skip
        name = unique()
        origin.behave(f"/base/{name}", headers=headers)
        assert [http.get(f"/api/cache/docs/{name}").headers["x-cache"] for _ in range(2)] == ["MISS", "MISS"]
        assert origin.calls[f"/base/{name}"] == 2, headers


def test_not_found_is_cached_as_the_origin_says(http: httpx.Client, origin: CountingOrigin) -> None:
    name = unique()
    origin.behave(f"/base/{name}", status=404, headers={"cache-control": "max-age=30"})
    answers = [http.get(f"/api/cache/docs/{name}") for _ in range(2)]
    assert [(a.status_code, a.headers["x-cache"]) for a in answers] == [(404, "MISS"), (404, "HIT")]


def test_matching_if_none_match_gets_304(http: httpx.Client, origin: CountingOrigin) -> None:
    name = unique()
    origin.behave(f"/base/{name}", headers={"cache-control": "max-age=60", "etag": '"v1"', "last-modified": "x"})
    first = http.get(f"/api/cache/docs/{name}")
    assert first.headers["etag"] == '"v1"'
    assert first.headers["last-modified"] == "x"
    again = http.get(f"/api/cache/docs/{name}", headers={"if-none-match": 'W/"v1"'})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", '"v1"')
    assert http.get(f"/api/cache/docs/{name}", headers={"if-none-match": '"v0"'}).status_code == 200


ESCAPES = [
    "/api/cache/docs/..%2f..%2fsecret",
    "/api/cache/docs/%2e%2e/%2e%2e/secret",
    "/api/cache/docs/a/../../secret",
    "/api/cache/docs/%2F%2Fevil.example/x",
    "/api/cache/docs/%5c%5cevil.example/x",
    "/api/cache/docs/@evil.example/x",
    "/api/cache/docs/x@evil.example",
    "/api/cache/docs/http://evil.example/x",
    "/api/cache/docs//evil.example/x",
    "/api/cache/docs/\\\\evil.example/x",
    "/api/cache/docs/%40evil.example",
    "/api/cache/nope/x",
]


def test_the_allow_list_refuses_every_escape(proxy: Functions, origin: CountingOrigin) -> None:
    origin.behave("/base/redirect", status=302, headers={"location": "http://evil.example/"})
    address = urlsplit(proxy.url)
    for target in [*ESCAPES, "/api/cache/docs/redirect"]:
        connection = HTTPConnection(address.hostname or "", address.port, timeout=20)
        try:  # http.client sends the target as written: no normalisation of dots or slashes
            connection.request("GET", target)
            status = connection.getresponse().status
        finally:
            connection.close()
        assert status in (400, 404, 422, 502), target
    seen = list(origin.calls)
    assert all(path.startswith("/base/") and ".." not in path for path in seen), seen


def test_stats_count_hits_misses_and_origin_calls(http: httpx.Client, proxy: Functions) -> None:
    name = unique()
    http.get(f"/api/cache/docs/{name}")
    http.get(f"/api/cache/docs/{name}")
    stats = http.get("/api/cache/stats", headers=proxy.admin()).json()
    assert set(stats) == {"hits", "stale", "misses", "origin_calls", "refreshes", "invalidations"}
    assert stats["hits"] >= 1
    assert stats["origin_calls"] >= 1
    assert http.get("/api/cache/stats").status_code == 401


def test_every_key_the_proxy_wrote_has_a_ttl(http: httpx.Client, proxy: Functions, gateway: Gateway) -> None:
    name = unique()
    http.get(f"/api/cache/docs/{name}")
    http.post("/api/cache/invalidate", json={"tags": [name], "keys": ["docs/x#y"]}, headers=proxy.admin())
    http.get("/api/cache/stats", headers=proxy.admin())  # sends this process's pending counters
    with Redis(gateway.url, gateway.token) as redis:
        written = [key for pattern in ("stashkit:{c:proxy:*", "stashkit:{ct:proxy:*", "stashkit:{cs:proxy}*")
                   for key in redis.keys(pattern)]  # fmt: skip
        ttls = {key: redis.pttl(key) for key in written}
    assert len(written) >= 4
    assert all(ttl > 0 or ttl == -2 for ttl in ttls.values()), ttls  # -2: gone since it was listed


@pytest.mark.parametrize("kind", KINDS)
def test_on_lambda_the_decoded_path_is_checked_alike(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mangum gives no raw path: what API Gateway decoded must be refused all the same."""
    monkeypatch.setenv(CACHE_ORIGINS_VAR, json.dumps({"docs": "http://127.0.0.1:9/base"}))
    loop = asyncio.new_event_loop()  # Mangum runs on the current loop, as in a Lambda container
    asyncio.set_event_loop(loop)
    try:
        cache_function: Any = importlib.import_module("functions.cache")
        monkeypatch.setattr(cache_function, "_proxy", None)
        for target in ("/api/cache/docs/..%2f..%2fsecret", "/api/cache/docs/%40evil.example", "/api/cache/docs/a%5cb"):
            answer = cache_function.lambda_handler(lambda_event(kind, target, "GET"), {})
            assert answer["statusCode"] == 422, (target, answer)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
