"""The gateway when Redis goes away and comes back, and its command-line contract."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from emulators.redis_rest.commands import rewrite_shebang
from tests.conftest import start_gateway
from tests.servers import redis_server, run_module


def test_redis_outage_gives_503_json_and_the_gateway_recovers_without_restart() -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    try:
        with Redis(gateway.url, gateway.token, rest_retries=0) as redis:
            assert redis.set("k", "before") is True
            node.stop()
            response = httpx.post(gateway.url, json=["GET", "k"], headers={"Authorization": f"Bearer {gateway.token}"})
            assert response.status_code == 503
            assert "cannot reach Redis" in response.json()["error"]
            with pytest.raises(UpstashError, match="cannot reach Redis"):
                redis.get("k")
            node = redis_server(node.port).start()
            assert redis.set("k", "after") is True
            assert redis.get("k") == "after"
    finally:
        gateway.process.stop()
        node.stop()


@dataclass(frozen=True)
class Outcome:
    """One request of the load: when it ran, and what came back."""

    started: float
    finished: float
    status: int
    body: dict[str, Any]


async def test_redis_restart_under_load_fails_fast_and_recovers_within_a_second(tag: str) -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    outcomes: list[Outcome] = []
    wrong: list[str] = []
    stop = asyncio.Event()

    async def load(http: httpx.AsyncClient, worker: int) -> None:
        key, attempted = f"{tag}w{worker}", set[str]()
        for i in itertools.count():
            for command in (["SET", key, f"{worker}-{i}"], ["GET", key]):
                if stop.is_set():
                    return
                started = time.monotonic()
                response = await http.post("/", json=command)
                outcomes.append(Outcome(started, time.monotonic(), response.status_code, response.json()))
                if command[0] == "SET":
                    attempted.add(command[2])  # a SET that failed may still have been applied
                elif response.status_code == 200 and response.json()["result"] not in attempted | {None}:
                    wrong.append(f"GET {key} gave {response.json()['result']!r}")

    def successes_after(moment: float) -> list[Outcome]:
        return [o for o in outcomes if o.status == 200 and o.started >= moment]

    async def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, "the load made no progress"
            await asyncio.sleep(0.01)

    headers = {"Authorization": f"Bearer {gateway.token}"}
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
            workers = [asyncio.create_task(load(http, n)) for n in range(4)]
            await until(lambda: len(successes_after(0)) >= 200)
            await asyncio.to_thread(node.stop)  # under load: the workers keep sending meanwhile
            stopped_at = time.monotonic()
            await until(lambda: sum(o.started > stopped_at for o in outcomes) >= 50)
            node = redis_server(node.port)
            await asyncio.to_thread(node.start)  # returns once redis-server accepts connections
            back_at = time.monotonic()
            await until(lambda: len(successes_after(back_at)) >= 200)
            stop.set()
            await asyncio.gather(*workers)
    finally:
        gateway.process.stop()
        node.stop()

    assert wrong == []
    assert max(o.finished - o.started for o in outcomes) < 3  # no hang: every request answered quickly
    failures = [o for o in outcomes if o.status != 200]
    assert failures, "the restart went unnoticed"
    for failure in failures:
        assert failure.status == 503
        assert "cannot reach Redis" in failure.body["error"]
    first_success = min(o.finished for o in outcomes if o.status == 200 and o.finished > back_at)
    assert first_success - back_at < 1.0  # the contract: recovery within a second of Redis being back


def test_connection_close_mode_closes_every_connection() -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}", "--connection-close")
    try:
        response = httpx.post(gateway.url, json=["PING"], headers={"Authorization": f"Bearer {gateway.token}"})
        assert response.headers["connection"] == "close"
        assert response.json() == {"result": "PONG"}
    finally:
        gateway.process.stop()
        node.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "1"], "--token"),
        (["--port", "1", "--token", "t", "--redis-url", "http://x"], "redis://"),
        (["--port", "1", "--token", "t", "--max-block", "60"], "--max-block"),
    ],
)
def test_bad_command_line_fails_with_a_clear_message(argv: list[str], message: str) -> None:
    result = run_module("emulators.redis_rest", *argv)
    assert result.returncode == 2
    assert message in result.stderr


def test_shebang_rewrite_per_redis_version() -> None:
    script = b"#!lua flags=allow-key-locking\nreturn 1"
    assert rewrite_shebang(script, 7) == b"#!lua\nreturn 1"
    assert (
        rewrite_shebang(b"#!lua flags=no-writes,allow-key-locking\nreturn 1", 7) == b"#!lua flags=no-writes\nreturn 1"
    )
    assert rewrite_shebang(script, 6) == b"--lua flags=allow-key-locking\nreturn 1"
    assert rewrite_shebang(b"return 1", 6) == b"return 1"
