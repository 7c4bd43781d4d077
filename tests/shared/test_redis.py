"""shared/redis.py against the real gateway: one client per loop, no 3 s penalty on a new loop, and the
one mapping of failures (an outage is `RedisUnavailable`, a Redis error stays an error)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from upstash_redis.errors import UpstashError

from shared.config import RedisSettings
from shared.errors import ConfigurationError, RedisUnavailable
from shared.metrics import start_request
from shared.redis import RedisClients
from tests.conftest import Gateway, start_gateway
from tests.servers import free_port


def clients_for(gateway: Gateway) -> RedisClients:
    return RedisClients(RedisSettings(gateway.url, gateway.token))


async def test_one_client_is_reused_on_one_loop(gateway: Gateway, tag: str) -> None:
    clients = clients_for(gateway)
    first = clients.get()
    assert clients.get() is first
    assert await first.set(f"{tag}k", "v")
    assert await clients.get().get(f"{tag}k") == "v"
    await clients.aclose()


def run_invocations_each_on_a_new_loop(gateway: Gateway, tag: str) -> tuple[list[str | None], bool]:
    clients = clients_for(gateway)
    seen: list[object] = []

    async def invocation(value: str) -> str | None:
        client = clients.get()
        seen.append(client)
        await client.set(f"{tag}k", value)
        return await client.get(f"{tag}k")

    values = [asyncio.run(invocation("one")), asyncio.run(invocation("two"))]
    return values, seen[0] is not seen[1]


def test_each_event_loop_gets_a_working_client(gateway: Gateway, tag: str) -> None:
    """Like a runtime that starts a new loop per invocation and never closes anything: a client shared
    across loops fails its first call on the new loop (SDK retry off) or, with SDK defaults, stalls 3 s."""
    values, distinct = run_invocations_each_on_a_new_loop(gateway, tag)
    assert values == ["one", "two"]
    assert distinct
    with warnings.catch_warnings():
        # The abandoned loops' clients are dropped with their loops; their sockets close when collected.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_get_redis_reads_the_environment(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
    monkeypatch.setenv("KV_REST_API_URL", gateway.url)
    monkeypatch.setenv("KV_REST_API_TOKEN", gateway.token)
    monkeypatch.delenv("UPSTASH_REDIS_REST_URL", raising=False)
    clients = RedisClients()
    assert await clients.get().set(f"{tag}env", "1")
    await clients.aclose()


def test_missing_configuration_is_named_at_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "KV_REST_API_URL", "KV_REST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    async def first_use() -> None:
        RedisClients().get()

    with pytest.raises(ConfigurationError, match="UPSTASH_REDIS_REST_URL is not set"):
        asyncio.run(first_use())


async def test_failures_are_mapped_once_outages_to_redis_unavailable_and_redis_errors_kept(
    gateway: Gateway, tag: str
) -> None:
    refused = RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=1)
    with pytest.raises(RedisUnavailable, match="ConnectionRefusedError"):
        await refused.get().get(f"{tag}k")
    await refused.aclose()
    # A gateway whose Redis is gone answers 503: the endpoint is up, the service behind it is not.
    orphan = start_gateway(f"redis://127.0.0.1:{free_port()}")
    try:
        behind = RedisClients(RedisSettings(orphan.url, orphan.token), timeout_s=2)
        with pytest.raises(RedisUnavailable, match="HTTP 503"):
            await behind.get().get(f"{tag}k")
        await behind.aclose()
    finally:
        orphan.process.stop()
    working = RedisClients(RedisSettings(gateway.url, gateway.token))
    await working.get().set(f"{tag}s", "a string")
    with pytest.raises(UpstashError, match="WRONGTYPE"):  # a bug in the caller's data, never an outage
        await working.get().hgetall(f"{tag}s")
    await working.aclose()


async def test_each_round_trip_is_counted_into_the_request(gateway: Gateway, tag: str) -> None:
    clients = RedisClients(RedisSettings(gateway.url, gateway.token))
    metrics = start_request("counting")
    await clients.get().set(f"{tag}a", "1")
    pipeline = clients.get().pipeline()
    pipeline.get(f"{tag}a")
    pipeline.get(f"{tag}b")
    await pipeline.exec()
    assert metrics.redis_round_trips == 2
    await clients.aclose()
