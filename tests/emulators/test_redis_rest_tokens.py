"""Read-write tokens (several, for rotation) and read-only tokens: what each may run, single node and
Cluster, through the wire and the official SDK; and that no token ever reaches a log."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from tests.conftest import GATEWAY_TOKEN, Gateway, start_gateway
from tests.servers import ROOT, Process, RedisCluster, free_port, python_module, redis_server, run_module, wait_for_port

ROTATED = "rotated-rw-token"
READ_ONLY = ("ro-token-one", "ro-token-two")


def noperm(command: str) -> str:
    return f"NOPERM this user has no permissions to run the '{command}' command or its subcommand"


@pytest.fixture(scope="module", params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def tokens_gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    if request.param == "single":
        node: Process = request.getfixturevalue("redis_node")
        url, extra = f"redis://127.0.0.1:{node.port}", []
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        url, extra = cluster.url, ["--cluster"]
    readonly = [arg for token in READ_ONLY for arg in ("--readonly-token", token)]
    handle = start_gateway(url, *extra, "--token", ROTATED, *readonly)
    yield handle
    handle.process.stop()


def post(gateway: Gateway, token: str, body: Any, path: str = "/") -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_every_read_write_token_works_and_others_get_401(tokens_gateway: Gateway, tag: str) -> None:
    for token in (GATEWAY_TOKEN, ROTATED):
        assert post(tokens_gateway, token, ["SET", f"{tag}k", token]).json() == {"result": "OK"}
    for token in ("rotated", ROTATED + "x", "ro-token", READ_ONLY[0].upper(), " " + ROTATED):
        response = post(tokens_gateway, token, ["GET", f"{tag}k"])
        assert response.status_code == 401, token
        assert response.json() == {"error": "Unauthorized"}


def test_read_only_tokens_run_reads(tokens_gateway: Gateway, tag: str) -> None:
    post(tokens_gateway, GATEWAY_TOKEN, ["HSET", f"{tag}h", "f", "v"])
    post(tokens_gateway, GATEWAY_TOKEN, ["SET", f"{tag}s", "text"])
    for token in READ_ONLY:
        assert post(tokens_gateway, token, ["HGETALL", f"{tag}h"]).json() == {"result": ["f", "v"]}
        assert post(tokens_gateway, token, ["MGET", f"{tag}s", f"{tag}none"]).json() == {"result": ["text", None]}
        assert post(tokens_gateway, token, ["PING"]).json() == {"result": "PONG"}
        assert post(tokens_gateway, token, ["XINFO", "STREAM", f"{tag}none"]).json()["error"].startswith("ERR no such")
        assert post(tokens_gateway, token, ["TIME"]).status_code == 200
    response = httpx.get(f"{tokens_gateway.url}/get/{tag}s", params={"_token": READ_ONLY[1]})
    assert response.json() == {"result": "text"}


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["SET", "{t}k", "v"], "set"),
        (["del", "{t}k"], "del"),
        (["XINFO", "HELP"], "xinfo"),  # Upstash's table refuses it first: not NOPERM
        (["PUBLISH", "channel", "m"], "publish"),
        (["KEYS", "*"], "keys"),
        (["SCAN", "0"], "scan"),
        (["FLUSHALL", "not-an-option"], "flushall"),
        (["SCRIPT", "LOAD", "return 1"], "script"),
        (["CONFIG", "GET", "*"], "config"),
        (["INFO"], "info"),
        (["XGROUP", "CREATE", "{t}s", "g", "$", "MKSTREAM"], "xgroup"),
    ],
)
def test_read_only_token_refuses_writes_and_powerful_reads(
    tokens_gateway: Gateway, args: list[str], command: str
) -> None:
    response = post(tokens_gateway, READ_ONLY[0], args)
    if command == "xinfo":
        assert response.json() == {"error": "ERR Command is not allowed: XINFO HELP"}
        return
    assert response.status_code == 403
    assert response.json() == {"error": noperm(command)}


def test_read_only_scripts_run_and_writing_scripts_are_refused(tokens_gateway: Gateway, tag: str) -> None:
    post(tokens_gateway, GATEWAY_TOKEN, ["SET", f"{tag}k", "v"])
    reading = "return redis.call('GET', KEYS[1])"
    assert post(tokens_gateway, READ_ONLY[0], ["EVAL", reading, 1, f"{tag}k"]).json() == {"result": "v"}
    sha = post(tokens_gateway, GATEWAY_TOKEN, ["SCRIPT", "LOAD", reading]).json()["result"]
    assert post(tokens_gateway, READ_ONLY[0], ["EVALSHA", sha, 1, f"{tag}k"]).json() == {"result": "v"}
    for script in (
        "redis.call('SET', KEYS[1], 'w'); return 1",
        "#!lua flags=allow-key-locking\nreturn redis.call('INCR', KEYS[1])",  # upstash-ratelimit's form
    ):
        response = post(tokens_gateway, READ_ONLY[0], ["EVAL", script, 1, f"{tag}k"])
        assert response.status_code == 403
        assert response.json()["error"].startswith(noperm("eval") + " (read-only token: ERR ")
    assert post(tokens_gateway, READ_ONLY[0], ["GET", f"{tag}k"]).json() == {"result": "v"}


def test_read_only_pipeline_refuses_each_write_and_transaction_refuses_all(tokens_gateway: Gateway, tag: str) -> None:
    post(tokens_gateway, GATEWAY_TOKEN, ["SET", f"{tag}a", "1"])
    body = [["GET", f"{tag}a"], ["INCR", f"{tag}a"], ["EVAL", "return redis.call('INCR', KEYS[1])", 1, f"{tag}a"]]
    items = post(tokens_gateway, READ_ONLY[0], body, "/pipeline").json()
    assert items[0] == {"result": "1"}
    assert items[1] == {"error": noperm("incr")}
    assert items[2]["error"].startswith(noperm("eval"))
    response = post(tokens_gateway, READ_ONLY[0], [["GET", f"{tag}a"], ["SET", f"{tag}b", "2"]], "/multi-exec")
    assert response.status_code == 403
    assert response.json() == {"error": noperm("set")}
    assert post(tokens_gateway, GATEWAY_TOKEN, ["MGET", f"{tag}a", f"{tag}b"]).json() == {"result": ["1", None]}
    reads = post(tokens_gateway, READ_ONLY[0], [["GET", f"{tag}a"], ["STRLEN", f"{tag}a"]], "/multi-exec")
    assert reads.json() == [{"result": "1"}, {"result": 1}]


def test_sdk_with_the_read_only_token(tokens_gateway: Gateway, tag: str) -> None:
    with Redis(tokens_gateway.url, GATEWAY_TOKEN, rest_retries=0) as writer:
        writer.set(f"{tag}k", "v")
    with Redis(tokens_gateway.url, READ_ONLY[1], rest_retries=0) as reader:
        assert reader.get(f"{tag}k") == "v"
        with pytest.raises(UpstashError, match=r"^NOPERM this user has no permissions to run the 'set' command"):
            reader.set(f"{tag}k", "w")
        assert reader.get(f"{tag}k") == "v"


def test_read_only_token_from_the_environment(redis_node: Process, tag: str) -> None:
    port = free_port()
    env = {"STASHKIT_GATEWAY_TOKEN": "env-rw", "STASHKIT_GATEWAY_READONLY_TOKEN": "env-ro"}
    process = python_module(
        "emulators.redis_rest", port, "--redis-url", f"redis://127.0.0.1:{redis_node.port}", env=env
    )
    gateway = Gateway(f"http://127.0.0.1:{port}", "env-rw", process.start(), "")
    try:
        assert post(gateway, "env-rw", ["SET", f"{tag}k", "v"]).json() == {"result": "OK"}
        assert post(gateway, "env-ro", ["GET", f"{tag}k"]).json() == {"result": "v"}
        assert post(gateway, "env-ro", ["SET", f"{tag}k", "w"]).status_code == 403
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "t", "--readonly-token", "t"], "both read-write and read-only"),
        (["--token", "t", "--readonly-token", ""], "cannot be empty"),
        (["--readonly-token", "r"], "--token"),
    ],
)
def test_bad_token_options_fail_with_a_clear_message(argv: list[str], message: str) -> None:
    result = run_module("emulators.redis_rest", "--port", "1", *argv)
    assert result.returncode == 2
    assert message in result.stderr


def test_tokens_never_reach_the_log_even_with_the_access_log_on(tag: str) -> None:
    node = redis_server().start()
    port = free_port()
    argv = [sys.executable, "-m", "emulators.redis_rest", "--port", str(port), "--access-log"]
    argv += [
        "--redis-url",
        f"redis://127.0.0.1:{node.port}",
        "--token",
        "rw-secret-1",
        "--readonly-token",
        "ro-secret-2",
    ]
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "gateway.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=dict(os.environ))
            try:
                wait_for_port(port, proc)
                url = f"http://127.0.0.1:{port}"
                httpx.get(f"{url}/set/{tag}k/v", params={"_token": "rw-secret-1"})
                httpx.get(f"{url}/get/{tag}k", params={"a": "b", "_token": "ro-secret-2"})
                httpx.get(f"{url}/set/{tag}k/w", params={"_token": "ro-secret-2"})
                httpx.post(url, json=["GET", "k"], headers={"Authorization": "Bearer rw-secret-1"})
                httpx.post(url, json=["GET", "k"], headers={"Authorization": "Bearer wrong-secret-3"})
            finally:
                proc.terminate()
                proc.wait(timeout=10)
                node.stop()
        log = log_path.read_text()
    assert '"GET /get/' in log  # the access log is on...
    assert "_token=***" in log
    for secret in ("rw-secret-1", "ro-secret-2", "wrong-secret-3"):  # ...and no token shows
        assert secret not in log
