"""The gateway's wire behaviour, request by request (reference §11.1 R1-R17 and the issue's list)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {gateway.token}", "Upstash-Encoding": "base64"}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        yield client


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def command(http: httpx.Client, *args: Any) -> httpx.Response:
    return http.post("/", json=list(args))


def test_base64_mode_encodes_every_string_but_ok(http: httpx.Client, tag: str) -> None:
    assert command(http, "SET", f"{tag}k", "v").json() == {"result": "OK"}
    assert command(http, "GET", f"{tag}k").json() == {"result": b64("v")}
    assert command(http, "PING").json() == {"result": b64("PONG")}
    assert command(http, "TYPE", f"{tag}k").json() == {"result": b64("string")}
    assert command(http, "GET", f"{tag}missing").json() == {"result": None}


def test_plain_mode_returns_text(gateway: Gateway, tag: str) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    with httpx.Client(base_url=gateway.url, headers=headers) as http:
        assert http.post("/", json=["SET", f"{tag}k", "héllo"]).json() == {"result": "OK"}
        assert http.post("/", json=["GET", f"{tag}k"]).json() == {"result": "héllo"}


def test_numbers_are_strings_never_json_floats(http: httpx.Client, tag: str) -> None:
    assert command(http, "ZADD", f"{tag}z", 1.5, "a").json() == {"result": 1}
    assert command(http, "ZSCORE", f"{tag}z", "a").json() == {"result": b64("1.5")}
    command(http, "SET", f"{tag}f", 1e20)
    http.post("/", content=b'["SET","' + f"{tag}lit".encode() + b'",1e+20]')
    assert command(http, "GET", f"{tag}lit").json() == {"result": b64("1e+20")}
    http.post("/", content=b'["SET","' + f"{tag}big".encode() + b'",123456789012345678901234567890]')
    assert command(http, "GET", f"{tag}big").json() == {"result": b64("123456789012345678901234567890")}
    command(http, "SET", f"{tag}b", True)
    assert command(http, "GET", f"{tag}b").json() == {"result": b64("true")}


def test_redis_error_is_verbatim_with_400(http: httpx.Client) -> None:
    response = command(http, "SET", "only-a-key")
    assert response.status_code == 400
    assert response.json() == {"error": "ERR wrong number of arguments for 'set' command"}


def test_pipeline_reports_each_result_and_error_inline(http: httpx.Client, tag: str) -> None:
    command(http, "SET", f"{tag}k", "v")
    response = http.post("/pipeline", json=[["SET", f"{tag}p", "1"], ["INCR", f"{tag}k"], ["GET", f"{tag}p"]])
    assert response.status_code == 200
    assert response.json() == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": b64("1")},
    ]
    assert http.post("/pipeline", json=[]).json() == []


def test_transaction_runtime_errors_inline_and_queue_errors_discard_all(http: httpx.Client, tag: str) -> None:
    body = [["SET", f"{tag}m", 1], ["INCR", f"{tag}m"], ["LPUSH", f"{tag}m", "x"], ["GET", f"{tag}m"]]
    assert http.post("/multi-exec", json=body).json() == [
        {"result": "OK"},
        {"result": 2},
        {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"},
        {"result": b64("2")},
    ]
    discarded = http.post("/multi-exec", json=[["SET", f"{tag}n", "1"], ["SET", f"{tag}n"]])
    assert discarded.status_code == 400
    error = discarded.json()["error"]
    assert error.startswith("EXECABORT Transaction discarded")
    assert "wrong number of arguments" in error
    assert command(http, "GET", f"{tag}n").json() == {"result": None}


def test_bad_tokens_get_401_json(gateway: Gateway) -> None:
    for path in ("/", "/pipeline", "/multi-exec", "/get/x", "/__stats"):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dGVzdA=="}):
            response = httpx.post(gateway.url + path, json=["GET", "x"], headers=headers)
            assert response.status_code == 401, path
            assert response.json() == {"error": "Unauthorized"}


def test_malformed_bodies_get_400_json_naming_the_problem(http: httpx.Client) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("/", b"not json", "not valid JSON"),
        ("/", b'{"cmd": "GET"}', "must be a JSON array"),
        ("/", b"[]", "empty command"),
        ("/", b'["SET","k",null]', "argument 2 is null"),
        ("/", b'["SET","k",{"a":1}]', "argument 2 is an object"),
        ("/", b'["SET","k",NaN]', "NaN"),
        ("/pipeline", b'["GET","k"]', "must be a JSON array"),
        ("/multi-exec", b"[[]]", "empty command"),
    ]
    for path, body, message in cases:
        response = http.post(path, content=body)
        assert response.status_code == 400, body
        assert message in response.json()["error"], body


def test_other_methods_get_405_json_naming_what_the_endpoint_takes(http: httpx.Client) -> None:
    for method, path, allowed in (
        ("GET", "/", "POST"),
        ("DELETE", "/", "POST"),
        ("PUT", "/pipeline", "POST"),
        ("GET", "/multi-exec", "POST"),
        ("DELETE", "/get/k", "GET, POST, PUT, HEAD"),
        ("PATCH", "/set/k/v", "GET, POST, PUT, HEAD"),
        ("POST", "/__stats", "GET"),
        ("POST", "/__metrics", "GET"),
        ("PUT", "/subscribe/news", "GET, POST"),
    ):
        response = http.request(method, path)
        assert response.status_code == 405, (method, path)
        assert "error" in response.json()
        assert response.headers["allow"] == allowed, (method, path)


def test_double_slashes_and_path_style_commands(gateway: Gateway, http: httpx.Client, tag: str) -> None:
    # As the SDK sends it for a URL with a trailing slash (G6); a relative "//x" would be a host in httpx.
    doubled = http.post(f"{gateway.url}//pipeline", json=[["SET", f"{tag}a", "1"]])
    assert doubled.json() == [{"result": "OK"}]
    assert http.post(f"/set/{tag}b", content=b"body value").json() == {"result": "OK"}
    assert http.get(f"/get/{tag}b").json() == {"result": b64("body value")}
    assert http.get(f"/set/{tag}c/v", params={"EX": "100"}).json() == {"result": "OK"}
    assert 0 < http.get(f"/ttl/{tag}c").json()["result"] <= 100
    anonymous = httpx.get(f"{gateway.url}/get/{tag}b", params={"_token": gateway.token})
    assert anonymous.json() == {"result": "body value"}


def test_every_response_carries_a_fresh_sync_token(http: httpx.Client) -> None:
    tokens = {command(http, "PING").headers["upstash-sync-token"] for _ in range(5)}
    tokens.add(http.post("/pipeline", json=[["PING"]]).headers["upstash-sync-token"])
    tokens.add(http.post("/multi-exec", json=[["PING"]]).headers["upstash-sync-token"])
    assert len(tokens) == 7


def test_shebang_scripts_are_rewritten_and_keep_the_original_sha(http: httpx.Client) -> None:
    script = "#!lua flags=allow-key-locking\nreturn 7"
    assert command(http, "EVAL", script, 0).json() == {"result": 7}
    assert command(http, "EVAL_RO", "#!lua flags=no-writes,allow-key-locking\nreturn 8", 0).json() == {"result": 8}
    sha = hashlib.sha1(script.encode()).hexdigest()
    assert command(http, "SCRIPT", "LOAD", script).json() == {"result": b64(sha)}
    assert command(http, "EVALSHA", sha, 0).json() == {"result": 7}
    assert command(http, "SCRIPT", "EXISTS", sha).json() == {"result": [1]}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["HELLO", "3"], "HELLO is not supported"),
        (["SELECT", "1"], "SELECT is not supported"),
        (["SUBSCRIBE", "ch"], "SUBSCRIBE is not supported"),
        (["MONITOR"], "MONITOR is not supported"),
        (["WATCH", "k"], "WATCH is not supported"),
        (["MULTI"], "MULTI is not supported"),
        (["CLIENT", "SETNAME", "x"], "CLIENT is not supported"),
        (["BLPOP", "q", 0], "would block forever"),
        (["BZPOPMIN", "q", "0"], "would block forever"),
        (["BLMPOP", "0", "1", "q", "LEFT"], "would block forever"),
        (["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], "would block forever"),
        (["BRPOP", "q", 3600], "at most 10s"),
    ],
)
def test_commands_a_rest_call_cannot_carry_are_refused_at_once(
    http: httpx.Client, args: list[Any], reason: str
) -> None:
    response = command(http, *args)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    # ...and the connection state is untouched: the next command still sees database 0.
    command(http, "SET", "state-check", "db0")
    assert command(http, "GET", "state-check").json() == {"result": b64("db0")}


def test_refused_command_inside_pipeline_and_transaction(http: httpx.Client, tag: str) -> None:
    items = http.post("/pipeline", json=[["SET", f"{tag}a", "1"], ["SELECT", "2"], ["GET", f"{tag}a"]]).json()
    assert items[0] == {"result": "OK"}
    assert "SELECT is not supported" in items[1]["error"]
    assert items[2] == {"result": b64("1")}
    response = http.post("/multi-exec", json=[["SET", f"{tag}b", "1"], ["EXEC"]])
    assert response.status_code == 400
    assert "EXEC is not supported" in response.json()["error"]
    assert command(http, "GET", f"{tag}b").json() == {"result": None}


def test_blocking_command_with_a_short_timeout_returns(http: httpx.Client, tag: str) -> None:
    assert command(http, "BLPOP", f"{tag}empty", "0.05").json() == {"result": None}


def test_oversized_body_is_refused(gateway: Gateway) -> None:
    response = httpx.post(
        gateway.url,
        content=b"[" + b'"x",' * (3 * 1024 * 1024) + b'"x"]',
        headers={"Authorization": f"Bearer {gateway.token}"},
    )
    assert response.status_code == 413
    assert "over" in response.json()["error"]


def test_stats_count_requests_and_commands_per_endpoint(gateway: Gateway, http: httpx.Client) -> None:
    before = gateway.stats()
    command(http, "PING")
    http.post("/pipeline", json=[["PING"], ["PING"], ["PING"]])
    after = gateway.stats()
    assert after["requests"]["command"] - before["requests"].get("command", 0) == 1
    assert after["requests"]["pipeline"] - before["requests"].get("pipeline", 0) == 1
    assert after["commands"]["pipeline"] - before["commands"].get("pipeline", 0) == 3
    assert after["total"]["requests"] - before["total"]["requests"] == 2


async def test_concurrent_transactions_never_interleave(gateway: Gateway, tag: str) -> None:
    """64 transactions at once, each reading back what it wrote: none sees another's writes (SRH #25)."""
    headers = {"Authorization": f"Bearer {gateway.token}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, limits=limits) as client:

        async def transaction(i: int) -> Any:
            body = [
                ["DEL", f"{tag}shared"],
                ["RPUSH", f"{tag}shared", str(i), str(i)],
                ["LRANGE", f"{tag}shared", 0, -1],
                ["INCR", f"{tag}count"],
            ]
            return (await client.post("/multi-exec", json=body)).json()

        results = await asyncio.gather(*(transaction(i) for i in range(64)))
    for i, items in enumerate(results):
        assert items[2] == {"result": [str(i), str(i)]}
    assert sorted(items[3]["result"] for items in results) == list(range(1, 65))


async def test_concurrent_pipelines_keep_their_own_order(gateway: Gateway, tag: str) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:

        async def pipeline(i: int) -> Any:
            key = f"{tag}p{i}"
            body = [["SET", key, "0"], *[["INCR", key] for _ in range(20)], ["GET", key]]
            return (await client.post("/pipeline", json=body)).json()

        results = await asyncio.gather(*(pipeline(i) for i in range(64)))
    for items in results:
        assert [item["result"] for item in items[1:21]] == list(range(1, 21))
        assert items[-1] == {"result": "20"}
