"""Session fixtures: a private redis-server, a 3-master Redis Cluster, and our gateway in front of each.

Tests use keys under their own hash tag (the `tag` fixture), so they never need to flush anything and
run unchanged against the single node and the Cluster.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.config import RedisSettings
from shared.redis import RedisClients
from tests.emulators.qstash_fixtures import CURRENT_KEY, NEXT_KEY, EmulatorProcess
from tests.servers import Process, RedisCluster, free_port, python_module, redis_server

# The QStash emulator's fixtures (qstash_server, destination, SDK clients) are shared by every test.
pytest_plugins = ["tests.emulators.qstash_fixtures"]

GATEWAY_TOKEN = "test-gateway-token"


@dataclass
class Gateway:
    """A running gateway: where it is, how to reach it, and its round-trip counters."""

    url: str
    token: str
    process: Process
    redis_url: str

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/__stats", headers={"Authorization": f"Bearer {self.token}"})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def requests(self) -> int:
        total: int = self.stats()["total"]["requests"]
        return total


def start_gateway(redis_url: str, *extra: str) -> Gateway:
    port = free_port()
    process = python_module(
        "emulators.redis_rest", port, "--redis-url", redis_url, "--token", GATEWAY_TOKEN, *extra
    ).start()
    return Gateway(f"http://127.0.0.1:{port}", GATEWAY_TOKEN, process, redis_url)


@asynccontextmanager
async def gateway_clients(handle: Gateway, timeout_s: float = 10) -> AsyncIterator[RedisClients]:
    """The library's Redis client for a test gateway, closed afterwards (pytest turns unclosed sockets
    into errors)."""
    clients = RedisClients(RedisSettings(handle.url, handle.token), timeout_s=timeout_s)
    try:
        yield clients
    finally:
        await clients.aclose()


@pytest.fixture(scope="session")
def redis_node() -> Iterator[Process]:
    node = redis_server().start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def gateway(redis_node: Process) -> Iterator[Gateway]:
    handle = start_gateway(f"redis://127.0.0.1:{redis_node.port}")
    yield handle
    handle.process.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster_gateway(redis_cluster: RedisCluster) -> Iterator[Gateway]:
    handle = start_gateway(redis_cluster.url, "--cluster")
    yield handle
    handle.process.stop()


@pytest.fixture(scope="module")
def private_gateway() -> Iterator[Gateway]:
    """A redis-server and gateway of the test module's own, for tests that must count or flush
    everything in it (a digest, a purge of every entry) without touching the shared servers."""
    node = redis_server().start()
    handle = start_gateway(f"redis://127.0.0.1:{node.port}")
    yield handle
    handle.process.stop()
    node.stop()


@pytest.fixture(scope="session", params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def any_gateway(request: pytest.FixtureRequest) -> Gateway:
    """The same test against a single redis-server and against the Cluster."""
    name = "gateway" if request.param == "single" else "cluster_gateway"
    handle: Gateway = request.getfixturevalue(name)
    return handle


ADMIN_TOKEN = "test-admin-token"
PUBLIC_URL = "https://stashkit.test"  # the deployment's public URL; QStash emulators route it to the functions
RATELIMIT_TOKEN = "test-ratelimit-token"
# The rate-limit policies the function tests run against (STASHKIT_RATELIMIT_POLICIES).
TEST_POLICIES = {
    "api": {"limits": [{"algorithm": "fixed_window", "limit": 3, "window_s": 60},
                       {"algorithm": "sliding_window", "limit": 100, "window_s": 3600}],
            "tiers": {"pro": [{"algorithm": "fixed_window", "limit": 10, "window_s": 60}]},
            "tier_prefixes": {"pk_pro_": "pro"}, "deny": ["banned"], "timeout_ms": 5000},
    "login": {"limits": [{"algorithm": "fixed_window", "limit": 2, "window_s": 60}], "outage": "fail_closed",
              "timeout_ms": 1000},
    "open": {"limits": [{"algorithm": "fixed_window", "limit": 2, "window_s": 60}], "outage": "fail_open",
             "timeout_ms": 1000},
    "uploads": {"limits": [{"algorithm": "token_bucket", "limit": 5, "window_s": 60, "refill": 1}],
                "concurrency": 1, "lease_ttl_s": 30, "timeout_ms": 5000},
    "signup": {"limits": [{"algorithm": "fixed_window", "limit": 2, "window_s": 60}], "public": True,
               "timeout_ms": 5000},
}  # fmt: skip


@dataclass
class Functions:
    """Every function of functions/ served over HTTP, as vercel.json routes them (`function_environment`
    configures them, tokens included)."""

    url: str
    process: Process

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def service(self) -> dict[str, str]:
        """What callers of the rate-limit service present."""
        return {"Authorization": f"Bearer {RATELIMIT_TOKEN}"}


def function_environment(gateway: Gateway, qstash: EmulatorProcess | None = None) -> dict[str, str]:
    env = {
        "UPSTASH_REDIS_REST_URL": gateway.url,
        "UPSTASH_REDIS_REST_TOKEN": gateway.token,
        "STASHKIT_ADMIN_TOKEN": ADMIN_TOKEN,
        "STASHKIT_RATELIMIT_TOKEN": RATELIMIT_TOKEN,
        "STASHKIT_RATELIMIT_POLICIES": json.dumps(TEST_POLICIES),
    }
    if qstash is not None:
        env |= {
            "QSTASH_URL": qstash.base_url,
            "QSTASH_TOKEN": qstash.token,
            "QSTASH_CURRENT_SIGNING_KEY": CURRENT_KEY,
            "QSTASH_NEXT_SIGNING_KEY": NEXT_KEY,
            "STASHKIT_PUBLIC_URL": PUBLIC_URL,
        }
    return env


def start_functions(env: dict[str, str]) -> Functions:
    port = free_port()
    return Functions(f"http://127.0.0.1:{port}", python_module("emulators.functions_server", port, env=env).start())


@pytest.fixture(scope="session")
def functions(gateway: Gateway, qstash_server: EmulatorProcess) -> Iterator[Functions]:
    handle = start_functions(function_environment(gateway, qstash_server))
    yield handle
    handle.process.stop()


@pytest.fixture
def tag() -> str:
    """A key prefix of this test's own: unique, and one hash tag so the Cluster accepts multi-key commands."""
    return f"{{t-{uuid.uuid4().hex[:12]}}}:"
