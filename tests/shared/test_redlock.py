"""FencedLock and Leadership on three independent endpoints (Redlock): three redis-servers of this
module's own, each behind its own gateway, stopped and restarted by the tests (memory-only, so a
restarted server comes back empty). An endpoint on a port where nothing listens plays one that is down
without losing its data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from upstash_redis.errors import UpstashError

from shared import keys
from shared.config import RedisSettings
from shared.errors import RedisUnavailable
from shared.locks.leader import Leadership
from shared.locks.lock import FencedLock
from shared.redis import RedisClients, RedisProvider
from tests.conftest import Gateway, start_gateway
from tests.servers import Process, free_port, redis_server


@dataclass
class Node:
    redis: Process
    gateway: Gateway

    def stop(self) -> None:
        self.redis.stop()

    def start(self) -> None:
        self.redis = redis_server(self.redis.port).start()


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for _ in range(3):
            server = redis_server().start()
            started.append(Node(server, start_gateway(f"redis://127.0.0.1:{server.port}")))
        yield started
    finally:
        for node in started:
            node.gateway.process.stop()
            node.redis.stop()


@pytest.fixture
async def endpoints(nodes: list[Node]) -> AsyncIterator[list[RedisClients]]:
    for node in nodes:  # a test that stopped a server does not leave it stopped for the next
        if not node.redis.running:
            node.start()
    clients = [RedisClients(RedisSettings(n.gateway.url, n.gateway.token), timeout_s=5) for n in nodes]
    clients.append(RedisClients(RedisSettings(f"http://127.0.0.1:{free_port()}", "token"), timeout_s=2))
    yield clients  # clients[3] is down
    for client in clients:
        await client.aclose()


def providers(endpoints: list[RedisClients], *indexes: int) -> list[RedisProvider]:
    return [endpoints[i].get for i in indexes]


async def test_grant_with_one_server_stopped(nodes: list[Node], endpoints: list[RedisClients], tag: str) -> None:
    lock = FencedLock(f"{tag}job", 10_000, endpoints=providers(endpoints, 0, 1, 2))
    nodes[0].stop()
    lease = await lock.acquire()
    assert lease is not None
    assert await lock.acquire() is None  # held on the other two: a majority
    assert await lock.holds(lease)
    assert await lock.release(lease)


async def test_refusal_with_two_servers_stopped_leaves_nothing_held(
    nodes: list[Node], endpoints: list[RedisClients], tag: str
) -> None:
    name = f"{tag}job"
    nodes[0].stop()
    nodes[1].stop()
    with pytest.raises(RedisUnavailable, match="1 of 3 Redis endpoints answered"):
        await FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 1, 2)).acquire()
    # The one endpoint that granted was released by the failed attempt.
    assert await FencedLock(name, 10_000, redis=endpoints[2].get).acquire() is not None


async def test_tokens_stay_monotonic_when_the_majority_changes(
    nodes: list[Node], endpoints: list[RedisClients], tag: str
) -> None:
    lock = FencedLock(f"{tag}job", 10_000, endpoints=providers(endpoints, 0, 1, 2))
    nodes[0].stop()
    first = await lock.acquire()
    assert first is not None
    await lock.release(first)
    nodes[0].start()  # back empty
    nodes[2].stop()
    second = await lock.acquire()
    assert second is not None and second.token > first.token


async def set_counters(endpoints: list[RedisClients], name: str, values: list[int]) -> None:
    for client, value in zip(endpoints, values, strict=False):
        await client.get().execute(["SET", keys.lock_counter("lock", name), value])


async def counters(endpoints: list[RedisClients], name: str) -> list[int]:
    return [int(str(await c.get().execute(["GET", keys.lock_counter("lock", name)]))) for c in endpoints[:3]]


async def test_the_token_is_the_majoritys_largest_counter_written_back_to_a_majority(
    endpoints: list[RedisClients], tag: str
) -> None:
    """The argument itself, without the time seed: counters far apart, the majority changing."""
    name = f"{tag}job"
    await set_counters(endpoints, name, [5, 1000, 2000])
    first = await FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 1, 3)).acquire()
    assert first is not None and first.token == 1001  # max(6, 1001)
    assert await counters(endpoints, name) == [1001, 1001, 2000]  # written back: only one held 1001
    await FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 1, 3)).release(first)
    second = await FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 3, 2)).acquire()
    assert second is not None and second.token == 2001  # max(1002, 2001): endpoint 0 joins both majorities
    assert await counters(endpoints, name) == [2001, 1001, 2001]


async def test_a_majority_already_at_the_token_needs_no_write_back_and_release_catches_up(
    nodes: list[Node], endpoints: list[RedisClients], tag: str
) -> None:
    name = f"{tag}job"
    lock = FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 1, 2))
    warm = await lock.acquire()  # load the scripts (a restarted server has none)
    assert warm is not None
    await lock.release(warm)
    await set_counters(endpoints, name, [7, 7, 3])
    before = [node.gateway.requests() for node in nodes]
    lease = await lock.acquire()
    assert lease is not None and lease.token == 8
    assert [node.gateway.requests() - b for node, b in zip(nodes, before, strict=True)] == [1, 1, 1]  # in parallel
    assert await counters(endpoints, name) == [8, 8, 4]
    assert await lock.release(lease)
    assert await counters(endpoints, name) == [8, 8, 8]  # the lagging counter caught up on release


async def test_an_error_from_one_endpoint_is_a_bug_and_propagates(endpoints: list[RedisClients], tag: str) -> None:
    name = f"{tag}job"
    await endpoints[1].get().execute(["SET", keys.lock_lease("lock", name), "not a hash"])
    with pytest.raises(UpstashError, match="WRONGTYPE"):
        await FencedLock(name, 10_000, endpoints=providers(endpoints, 0, 1, 2)).acquire()


async def test_leadership_on_three_endpoints_survives_one_down(
    nodes: list[Node], endpoints: list[RedisClients], tag: str
) -> None:
    every = providers(endpoints, 0, 1, 2)
    first, second = Leadership(f"{tag}lead", 10_000, endpoints=every), Leadership(f"{tag}lead", 10_000, endpoints=every)
    term = await first.campaign()
    assert term is not None
    nodes[1].stop()
    assert await first.is_leader(term)
    assert await second.campaign() is None
    renewed = await first.renew(term)
    assert renewed is not None and renewed.number == term.number
    assert await first.resign(renewed)
    successor = await second.campaign()
    assert successor is not None and successor.number > term.number
    with pytest.raises(ValueError, match="several endpoints"):
        second.fence_counter()
