"""The gateway when Redis goes away and comes back, and its command-line contract."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from upstash_redis import Redis
from upstash_redis.errors import UpstashError

from emulators.redis_rest.commands import rewrite_shebang
from tests.conftest import start_gateway
from tests.servers import ROOT, redis_server


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
    result = subprocess.run(
        [sys.executable, "-m", "emulators.redis_rest", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
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
