"""Benchmark: leaderboards through functions/leaderboards.py (uvicorn, loopback) and through the library on
a 1,000,000-member board, beside a bare ZREVRANGE through the same gateway, in the same run.

    .venv/bin/python bench/leaderboard.py

Starts its own redis-server, gateway and functions server. Counts REST round trips per operation from
the gateway's /__stats. Targets (issue #12): 1 round trip per submit (all-time and three periods) and per
read; top-100 and around-me p99 under 5 ms through the gateway on a 1,000,000-member board.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import redis as redis_py
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.http_client import HttpConnection, machine
from shared.config import RedisSettings
from shared.keys import leaderboard_entries, leaderboard_index
from shared.leaderboards.board import Leaderboard
from shared.leaderboards.boards import Board
from shared.leaderboards.script import UNITS_OFFSET
from shared.redis import RedisClients
from tests.servers import Process, free_port, python_module, redis_server

TOKEN = "bench-token"
SUBMIT_KEY = "bench-submit-key-0123"
BIG = 1_000_000
SAMPLES = 1000  # sequential calls per read per round
ROUNDS = 5
BOARDS = {
    "bench": {"periods": ["daily", "weekly", "monthly"], "ratelimit": None, "submit_keys": [SUBMIT_KEY],
              "max_score": 10**9},
    "big": {"ratelimit": None, "max_score": 10**9},
}  # fmt: skip


def get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def drive(port: int, requests: list[bytes], concurrency: int = 32) -> float:
    """Send every raw request over `concurrency` keep-alive connections; requests per second."""
    connections = [await HttpConnection.open(port) for _ in range(concurrency)]

    async def worker(index: int) -> None:
        for raw in requests[index::concurrency]:
            status, body = await connections[index].send(raw)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}: {body[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return len(requests) / elapsed


def submits(port: int, run: str, count: int) -> list[bytes]:
    """`count` submissions by 5,000 members at most, each with its own submission id."""
    found = []
    for i in range(count):
        body = json.dumps({"member": f"{run}-{i % 5000}", "score": i, "submission_id": f"{run}-{i}"}).encode()
        found.append(
            f"POST /api/leaderboards/bench/scores HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {SUBMIT_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return found


def gateway_requests(gateway_port: int) -> int:
    stats = httpx.get(f"http://127.0.0.1:{gateway_port}/__stats", headers={"Authorization": f"Bearer {TOKEN}"})
    total: int = stats.json()["total"]["requests"]
    return total


def load_big_board(redis_port: int) -> None:
    """1,000,000 members straight into Redis (redis-py, pipelined, 1,000 per command): the board as
    shared/leaderboards/script.py writes it, and a plain scored sorted set for the bare baseline."""
    client = redis_py.Redis(port=redis_port)
    entries, index, bare = leaderboard_entries("big", "all", "all"), leaderboard_index("big", "all", "all"), "bare"
    pipe = client.pipeline(transaction=False)
    for start in range(0, BIG, 1000):
        batch = range(start, start + 1000)
        made = {f"u{i}": f"{UNITS_OFFSET - (i * 7919 % BIG) * 1000:016d}{i + 1:016d}:u{i}" for i in batch}
        pipe.zadd(entries, dict.fromkeys(made.values(), 0))
        pipe.hset(index, items=[part for pair in made.items() for part in pair])
        pipe.zadd(bare, {f"u{i}": i * 7919 % BIG for i in batch})
        if start % 50_000 == 0:
            pipe.execute()
    pipe.execute()
    client.close()


async def latencies(call: Callable[[int], Awaitable[object]]) -> list[float]:
    for i in range(100):  # warm: the scripts load, the connections open
        await call(i)
    found = []
    for i in range(SAMPLES):
        started = time.perf_counter()
        await call(i)
        found.append((time.perf_counter() - started) * 1000)
    return found


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def big_board(gateway_port: int) -> dict[str, list[list[float]]]:
    """Each read's latencies, round by round: the reads alternate over ROUNDS rounds so a burst of
    background load on this shared machine hits all of them alike, and the median round is reported."""
    clients = RedisClients(RedisSettings(f"http://127.0.0.1:{gateway_port}", TOKEN), timeout_s=10)
    board = Leaderboard("big", Board(max_score=10**9), redis=clients.get)
    reads: dict[str, Callable[[int], Awaitable[object]]] = {
        "bare ZREVRANGE 0 99 (baseline)": lambda i: clients.get().execute(["ZREVRANGE", "bare", 0, 99, "WITHSCORES"]),
        "top 100 (ranks, scores, data)": lambda i: board.page(limit=100),
        "around-me (5 each side)": lambda i: board.member(f"u{i * 499 % BIG}", around=5),
        "rank of one member": lambda i: board.member(f"u{i * 499 % BIG}"),
    }
    try:
        top = await board.page(limit=100)
        if len(top.entries) != 100 or top.total != BIG:
            raise RuntimeError("the 1,000,000-member board did not load")
        found: dict[str, list[list[float]]] = {label: [] for label in reads}
        for _ in range(ROUNDS):
            for label, call in reads.items():
                found[label].append(await latencies(call))
        return found
    finally:
        await clients.aclose()


def median_round(rounds: list[list[float]]) -> list[float]:
    return sorted(rounds, key=lambda values: p(values, 99))[len(rounds) // 2]


def report(gateway_port: int, functions_port: int, redis_port: int) -> None:
    print(f"\nmachine: {machine()}; one uvicorn worker, 32 connections\n")
    uvloop.run(drive(functions_port, submits(functions_port, "warm", 64)))
    uvloop.run(drive(functions_port, [get(functions_port, "/api/leaderboards/bench?limit=10")] * 64))
    uvloop.run(drive(functions_port, [get(functions_port, "/api/leaderboards/bench/members/warm-1?around=5")] * 64))
    trips: dict[str, float] = {}
    reads = {
        "read top 10": "/api/leaderboards/bench?limit=10",
        "read around-me": "/api/leaderboards/bench/members/warm-1?around=5",
        "read count": "/api/leaderboards/bench/count?period=weekly",
    }
    before = gateway_requests(gateway_port)
    submit_rate = uvloop.run(drive(functions_port, submits(functions_port, "rt", 2000)))
    trips["submit (all + 3 periods)"] = (gateway_requests(gateway_port) - before) / 2000
    rates = {"submit (all + 3 periods)": submit_rate}
    for label, path in reads.items():
        before = gateway_requests(gateway_port)
        rates[label] = uvloop.run(drive(functions_port, [get(functions_port, path)] * 2000))
        trips[label] = (gateway_requests(gateway_port) - before) / 2000
    print(f"{'through the function':<28}{'per second':>12}{'round trips':>13}")
    for label, rate in rates.items():
        print(f"{label:<28}{rate:>12,.0f}{trips[label]:>13.2f}")

    loaded = time.perf_counter()
    load_big_board(redis_port)
    print(f"\nloaded {BIG:,} members in {time.perf_counter() - loaded:.1f} s; {SAMPLES} sequential calls per read "
          f"per round, median of {ROUNDS} rounds, ms:")  # fmt: skip
    found = {label: median_round(rounds) for label, rounds in uvloop.run(big_board(gateway_port)).items()}
    bare = found["bare ZREVRANGE 0 99 (baseline)"]
    print(f"{'1,000,000-member board':<34}{'p50':>8}{'p99':>8}{'p50 / bare':>12}")
    for label, values in found.items():
        print(f"{label:<34}{p(values, 50):>8.2f}{p(values, 99):>8.2f}{p(values, 50) / p(bare, 50):>12.2f}")
    print("\ntargets:")
    exact = all(abs(t - 1) < 1e-9 for t in trips.values())
    print(f"  1 round trip per submit and per read     {'met' if exact else 'MISSED'}: {trips}")
    for label in ("top 100 (ranks, scores, data)", "around-me (5 each side)"):
        p99 = p(found[label], 99)
        print(f"  {label} p99 < 5 ms{'':<6}{p99:.2f} ms  {'met' if p99 < 5 else 'MISSED'}")


def main() -> None:
    node = redis_server().start()
    gateway_port, functions_port = free_port(), free_port()
    processes: list[Process] = [node]
    env = {
        "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{gateway_port}",
        "UPSTASH_REDIS_REST_TOKEN": TOKEN,
        "STASHKIT_LEADERBOARDS": json.dumps(BOARDS),
    }
    try:
        gateway = python_module("emulators.redis_rest", gateway_port, "--redis-url", f"redis://127.0.0.1:{node.port}",
                                "--token", TOKEN)  # fmt: skip
        processes.append(gateway.start())
        processes.append(python_module("emulators.functions_server", functions_port, env=env).start())
        report(gateway_port, functions_port, node.port)
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
