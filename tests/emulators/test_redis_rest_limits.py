"""Request limits: sizes, a per-request deadline, and slow scripts stopped so one bad script cannot
block every other caller (single node and Cluster)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, start_gateway
from tests.servers import ROOT, Process, RedisCluster, redis_server

SPIN = "while true do end"  # writes nothing, so Redis can kill it
STOPPED = "ERR the gateway stopped this script after 0.3s (--script-timeout)"


def post(gateway: Gateway, body: Any, path: str = "/") -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers={"Authorization": f"Bearer {gateway.token}"}, timeout=30)


@pytest.fixture(scope="module")
def small_gateway(redis_node: Process) -> Iterator[Gateway]:
    handle = start_gateway(
        f"redis://127.0.0.1:{redis_node.port}",
        *("--max-pipeline-commands", "5", "--max-command-args", "4", "--max-body-bytes", "300"),
    )
    yield handle
    handle.process.stop()


def test_too_many_commands_or_arguments_get_a_clear_400(small_gateway: Gateway, tag: str) -> None:
    assert post(small_gateway, [["PING"]] * 5, "/pipeline").status_code == 200
    for path in ("/pipeline", "/multi-exec"):
        response = post(small_gateway, [["SET", f"{tag}k", "v"]] * 6, path)
        assert response.status_code == 400
        assert response.json() == {"error": "ERR 6 commands in one request: at most 5 (--max-pipeline-commands)"}
    assert post(small_gateway, ["MSET", f"{tag}a", "1", f"{tag}b"]).status_code == 400  # Redis: arity
    response = post(small_gateway, ["MSET", f"{tag}a", "1", f"{tag}b", "2"])
    assert response.status_code == 400
    assert response.json() == {"error": "ERR 5 arguments: at most 4 (--max-command-args)"}
    response = post(small_gateway, [["GET", f"{tag}a"], ["MSET", f"{tag}a", "1", f"{tag}b", "2"]], "/pipeline")
    assert response.json() == {"error": "ERR command 2 has 5 arguments: at most 4 (--max-command-args)"}
    headers = {"Authorization": f"Bearer {small_gateway.token}"}
    response = httpx.get(f"{small_gateway.url}/mset/{tag}a/1/{tag}b/2", headers=headers)
    assert response.json()["error"].endswith("(--max-command-args)")
    assert post(small_gateway, ["MGET", f"{tag}a", f"{tag}b"]).json() == {"result": [None, None]}  # nothing ran
    response = post(small_gateway, ["SET", f"{tag}big", "x" * 400])
    assert response.status_code == 413
    assert response.json() == {"error": "ERR request body over 300 bytes"}


@pytest.fixture(scope="module")
def debug_node() -> Iterator[Process]:
    node = redis_server(None, "--enable-debug-command", "yes").start()
    yield node
    node.stop()


def test_a_request_over_its_deadline_gets_504_and_leaves_no_stale_connection(debug_node: Process) -> None:
    gateway = start_gateway(
        f"redis://127.0.0.1:{debug_node.port}",
        *("--allow-admin", "--request-timeout", "0.5", "--max-block", "0.2", "--max-connections", "1"),
    )
    try:
        response = post(gateway, ["DEBUG", "SLEEP", "1"])
        assert response.status_code == 504
        assert response.json() == {"error": "ERR the gateway gave up after 0.5s (--request-timeout)"}
        # The one pooled connection was dropped, not handed on with DEBUG's reply still to come.
        deadline = time.monotonic() + 10
        while (answer := post(gateway, ["ECHO", "after"])).status_code == 504 and time.monotonic() < deadline:
            pass  # Redis still sleeps: each try waits up to the deadline, so no sleep here
        assert answer.json() == {"result": "after"}
    finally:
        gateway.process.stop()


def test_a_body_that_never_finishes_arriving_gets_504(debug_node: Process) -> None:
    gateway = start_gateway(f"redis://127.0.0.1:{debug_node.port}", "--request-timeout", "0.3", "--max-block", "0.1")
    try:
        port = int(gateway.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gateway.token}\r\nContent-Length: 100\r\n\r\n"
            sock.sendall(head.encode() + b'["GET",')  # ...and the rest never comes
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 504")
        assert b'{"error":"ERR the gateway gave up after 0.3s (--request-timeout)"}' in reply
    finally:
        gateway.process.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-pipeline-commands", "0"], "--max-pipeline-commands must be positive"),
        (["--request-timeout", "5"], "--max-block must be shorter than --request-timeout"),
        (["--script-timeout", "-1"], "--script-timeout must be 0"),
    ],
)
def test_bad_limits_fail_with_a_clear_message(argv: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulators.redis_rest", "--port", "1", "--token", "t", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture(scope="module", params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def script_gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """A gateway stopping scripts after 0.3 s, in front of Redis servers of its own (it sets their
    lua-time-limit), with few connections so that a connection left inside MULTI would show."""
    limits = ("--script-timeout", "0.3", "--max-connections", "3")
    if request.param == "single":
        node = redis_server().start()
        handle = start_gateway(f"redis://127.0.0.1:{node.port}", *limits)
        yield handle
        handle.process.stop()
        node.stop()
    else:
        cluster = RedisCluster().start()
        handle = start_gateway(cluster.url, "--cluster", *limits)
        yield handle
        handle.process.stop()
        cluster.stop()


async def concurrently(gateway: Gateway, script: list[Any], *others: tuple[str, Any]) -> tuple[Any, list[Any]]:
    """The script's response, and those of the other requests sent while it runs."""
    headers = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as client:
        slow = asyncio.create_task(client.post("/", json=script))
        await asyncio.sleep(0.1)  # let the script start: the others then meet a busy Redis
        answers = await asyncio.gather(*(client.post(path, json=body) for path, body in others))
        response = await slow
    return response, answers


async def test_a_spinning_script_is_stopped_and_other_callers_go_on(script_gateway: Gateway, tag: str) -> None:
    post(script_gateway, ["SET", f"{tag}k", "v"])
    others = [("/", ["GET", f"{tag}k"]), ("/multi-exec", [["INCR", f"{tag}n"], ["GET", f"{tag}k"]])]
    stopped, (get, transaction) = await concurrently(script_gateway, ["EVAL", SPIN, 1, f"{tag}k"], *others)
    assert stopped.status_code == 400
    assert stopped.json()["error"].startswith(STOPPED)
    assert "Script killed by user with SCRIPT KILL" in stopped.json()["error"]
    assert get.json() == {"result": "v"}
    assert transaction.json() == [{"result": 1}, {"result": "v"}]
    # Every pooled connection is usable afterwards (none was left inside MULTI by a BUSY EXEC).
    for _ in range(6):
        assert post(script_gateway, ["GET", f"{tag}k"]).json() == {"result": "v"}


async def test_keyless_scripts_functions_and_pipelines_are_stopped_too(script_gateway: Gateway, tag: str) -> None:
    stopped, _ = await concurrently(script_gateway, ["EVAL", SPIN, 0])
    assert stopped.json()["error"].startswith(STOPPED)
    library = "#!lua name=gwspin\nredis.register_function('spin', function() while true do end end)"
    post(script_gateway, ["FUNCTION", "LOAD", "REPLACE", library])
    stopped, _ = await concurrently(script_gateway, ["FCALL", "spin", 1, f"{tag}k"])
    assert stopped.json()["error"].startswith(STOPPED)
    body = [["SET", f"{tag}p", "1"], ["EVAL", SPIN, 1, f"{tag}p"], ["EVAL", SPIN, 1, f"{tag}p"], ["GET", f"{tag}p"]]
    items = post(script_gateway, body, "/pipeline").json()
    assert items[0] == {"result": "OK"}
    assert items[1]["error"].startswith(STOPPED)
    assert items[2]["error"].startswith(STOPPED)
    assert items[3] == {"result": "1"}


async def test_a_script_that_wrote_runs_to_its_end(script_gateway: Gateway, tag: str) -> None:
    """Redis cannot kill a script that wrote (UNKILLABLE): it finishes, others wait for it."""
    script = "redis.call('SET', KEYS[1], 'w'); local i = 0; while i < 60000000 do i = i + 1 end; return i"
    finished, (get,) = await concurrently(script_gateway, ["EVAL", script, 1, f"{tag}w"], ("/", ["GET", f"{tag}w"]))
    assert finished.json() == {"result": 60000000}
    assert get.json() == {"result": "w"}
