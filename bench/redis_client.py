"""Benchmark: what one Redis call costs the caller, through each candidate HTTP client, beside the floor.

    .venv/bin/python bench/redis_client.py [--calls N] [--rounds R] [--exits N]

Starts its own redis-server and one gateway worker on free loopback ports, then measures GET, SET and
EVALSHA at concurrency 1 and 16 (N calls per measurement, default 2,000; R interleaved rounds, default
5, medians shown): wall time per call (elapsed / calls) and this process's CPU per call
(`time.process_time`, every thread included), through

    sdk+httpx            upstash_redis.asyncio.Redis as it comes (its own httpx client)
    sdk+httpx-aiohttp    the same SDK, its httpx client given httpx-aiohttp's transport
    aiohttp              aiohttp's ClientSession posting the command itself
    pyreqwest            pyreqwest (Rust: reqwest, hyper, tokio) posting the command itself
    stashkit             the SDK as shared/redis.py builds it: its requests carried by shared/http1.py
    floor                bare asyncio streams, one kept-alive connection per caller: write the request,
                         read the answer; JSON encoded and decoded, nothing else

Also printed: each client's import cost over what every function imports anyway (`-X importtime`), and,
from N fresh processes per client (--exits, default 40) that import it, build it, make one GET, close it
and exit: the import, the first call (client built, connection opened, answer read), and how many
exited cleanly. Targets (issue #14): stashkit's wall time per call at most 2x the floor, CPU at most 2.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.http_client import HttpConnection, machine  # noqa: E402
from shared.config import RedisSettings  # noqa: E402
from shared.redis import RedisClients  # noqa: E402
from tests.servers import free_port, python_module, redis_server  # noqa: E402

TOKEN = "bench-token"
KEY = "bench:key"
VALUE = "x" * 100
SCRIPT = "return redis.call('GET', KEYS[1])"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Upstash-Encoding": "base64", "Content-Type": "application/json"}

Call = Callable[[list[Any]], Awaitable[Any]]  # one Redis command, as the REST API's JSON array


@dataclass
class Subject:
    """A client under test: `open(url, concurrency)` gives one call function per concurrent caller."""

    name: str
    open: Callable[[str, int], Awaitable[tuple[list[Call], Callable[[], Awaitable[None]]]]]


def sdk_call(redis: Any) -> Call:
    async def call(command: list[Any]) -> Any:
        op = command[0]
        if op == "GET":
            return await redis.get(command[1])
        if op == "SET":
            return await redis.set(command[1], command[2])
        return await redis.evalsha(command[1], keys=[command[3]])

    return call


async def open_sdk(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    from upstash_redis.asyncio import Redis

    redis = Redis(url, TOKEN)
    return [sdk_call(redis)] * concurrency, redis.close


async def open_sdk_aiohttp(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    import httpx
    from httpx_aiohttp import AiohttpTransport
    from upstash_redis.asyncio import Redis

    redis = Redis(url, TOKEN)
    await redis._http._client.aclose()
    redis._http._client = httpx.AsyncClient(transport=AiohttpTransport(), timeout=30)
    return [sdk_call(redis)] * concurrency, redis.close


async def open_stashkit(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    clients = RedisClients(RedisSettings(url, TOKEN), timeout_s=10)
    return [sdk_call(clients.get())] * concurrency, clients.aclose


async def open_aiohttp(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession()

    async def call(command: list[Any]) -> Any:
        async with session.post(url, data=json.dumps(command).encode(), headers=HEADERS) as response:
            return json.loads(await response.read())

    return [call] * concurrency, session.close


async def open_pyreqwest(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().build()

    async def call(command: list[Any]) -> Any:
        response = await client.post(url).headers(HEADERS).body_bytes(json.dumps(command).encode()).build().send()
        return json.loads(bytes(await response.bytes()))

    return [call] * concurrency, client.close


async def open_floor(url: str, concurrency: int) -> tuple[list[Call], Callable[[], Awaitable[None]]]:
    connections = [await HttpConnection.open(int(url.rsplit(":", 1)[1])) for _ in range(concurrency)]
    headers = {k: v for k, v in HEADERS.items() if k != "Content-Type"}  # HttpConnection adds it

    def caller(connection: HttpConnection) -> Call:
        async def call(command: list[Any]) -> Any:
            _, body = await connection.send(connection.request("/", json.dumps(command).encode(), headers))
            return json.loads(body)

        return call

    async def close() -> None:
        for connection in connections:
            connection.close()

    return [caller(c) for c in connections], close


SUBJECTS = [
    Subject("sdk+httpx", open_sdk),
    Subject("sdk+httpx-aiohttp", open_sdk_aiohttp),
    Subject("aiohttp", open_aiohttp),
    Subject("pyreqwest", open_pyreqwest),
    Subject("stashkit", open_stashkit),
    Subject("floor", open_floor),
]


async def measure(subject: Subject, url: str, command: list[Any], concurrency: int, calls: int) -> tuple[float, float]:
    """Wall ms and CPU ms per call, `calls` calls spread over `concurrency` callers."""
    callers, close = await subject.open(url, concurrency)
    try:
        for call in callers:  # connect and warm up outside the measurement
            for _ in range(20):
                await call(command)
        per_caller = calls // concurrency

        async def run(call: Call) -> None:
            for _ in range(per_caller):
                await call(command)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(run(call) for call in callers))
        done = per_caller * concurrency
        return (time.perf_counter() - wall) * 1000 / done, (time.process_time() - cpu) * 1000 / done
    finally:
        await close()


async def benchmark(
    url: str, sha: str, calls: int, rounds: int
) -> dict[tuple[str, str, int], list[tuple[float, float]]]:
    commands: dict[str, list[Any]] = {
        "GET": ["GET", KEY],
        "SET": ["SET", KEY, VALUE],
        "EVALSHA": ["EVALSHA", sha, 1, KEY],
    }
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = collections.defaultdict(list)
    for _ in range(rounds):
        for op, command in commands.items():
            for concurrency in (1, 16):
                for subject in SUBJECTS:  # interleaved, so drift in the machine's load hits every subject alike
                    results[(op, subject.name, concurrency)].append(
                        await measure(subject, url, command, concurrency, calls)
                    )
    return results


# What each client adds to a function's cold start: its import on top of what every function already
# imports (asyncio and the SDK, which brings httpx), so shared dependencies are not counted twice.
BASE = "import asyncio, upstash_redis.asyncio"
IMPORTS = {
    "upstash_redis.asyncio (+httpx), over asyncio": ("import asyncio", "upstash_redis.asyncio"),
    "httpx_aiohttp (+aiohttp)": (BASE, "httpx_aiohttp"),
    "aiohttp": (BASE, "aiohttp"),
    "pyreqwest": (BASE, "pyreqwest.client"),
    "shared.http1 (stashkit)": (BASE, "shared.http1"),
}


def import_ms(base: str, module: str, runs: int = 7) -> float:
    """Median cumulative import time of `module` after `base`, in fresh interpreters (`-X importtime`)."""
    totals = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"{base}; import {module}"],
            capture_output=True, text=True, cwd=ROOT, check=True,
        ).stderr  # fmt: skip
        line = next(line for line in reversed(out.splitlines()) if line.rstrip().endswith(f"| {module}"))
        totals.append(int(line.split("|")[1]) / 1000)
    return statistics.median(totals)


FRESH_PROGRAM = """
import asyncio, sys, time
sys.path.insert(0, {root!r})
url, which = sys.argv[1], sys.argv[2]
begin = time.perf_counter()
if which == "pyreqwest":
    from pyreqwest.client import ClientBuilder
elif which == "sdk+httpx":
    from upstash_redis.asyncio import Redis
else:
    from shared.config import RedisSettings
    from shared.redis import RedisClients
imported = time.perf_counter()
async def main():
    if which == "pyreqwest":
        client = ClientBuilder().build()
        request = client.post(url).header("Authorization", "Bearer {token}").body_bytes(b'["GET","k"]')
        await (await request.build().send()).bytes()
        answered = time.perf_counter()
        await client.close()
    elif which == "sdk+httpx":
        redis = Redis(url, "{token}")
        await redis.get("k")
        answered = time.perf_counter()
        await redis.close()
    else:
        clients = RedisClients(RedisSettings(url, "{token}"), timeout_s=5)
        await clients.get().get("k")
        answered = time.perf_counter()
        await clients.aclose()
    print((imported - begin) * 1000, (answered - imported) * 1000)
asyncio.run(main())
"""


@dataclass
class Fresh:
    """Short processes that import a client, make one request, close it and exit."""

    import_ms: float  # median
    first_call_ms: float  # median: client built, connection opened, first answer read
    exit_codes: collections.Counter[int]


def fresh_processes(url: str, which: str, runs: int) -> Fresh:
    program = FRESH_PROGRAM.format(root=str(ROOT), token=TOKEN)
    codes: collections.Counter[int] = collections.Counter()
    imports, first_calls = [], []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", program, url, which], capture_output=True, text=True)
        codes[done.returncode] += 1
        if done.stdout.strip():
            imported, answered = map(float, done.stdout.split())
            imports.append(imported)
            first_calls.append(answered)
    return Fresh(statistics.median(imports), statistics.median(first_calls), codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement (default: 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--exits", type=int, default=40, help="fresh processes per client (first call, clean exit)")
    args = parser.parse_args()
    node = redis_server().start()
    port = free_port()
    gateway = python_module(
        "emulators.redis_rest", port, "--redis-url", f"redis://127.0.0.1:{node.port}", "--token", TOKEN
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        sha = asyncio.run(_prepare(url))
        results = asyncio.run(benchmark(url, sha, args.calls, args.rounds))
        fresh = {which: fresh_processes(url, which, args.exits) for which in ("sdk+httpx", "pyreqwest", "stashkit")}
    finally:
        gateway.stop()
        node.stop()
    imports = {name: import_ms(base, module) for name, (base, module) in IMPORTS.items()}
    report(results, imports, fresh, args)


async def _prepare(url: str) -> str:
    clients = RedisClients(RedisSettings(url, TOKEN), timeout_s=10)
    redis = clients.get()
    await redis.set(KEY, VALUE)
    sha: str = await redis.script_load(SCRIPT)
    await clients.aclose()
    return sha


def report(
    results: dict[tuple[str, str, int], list[tuple[float, float]]],
    imports: dict[str, float],
    fresh: dict[str, Fresh],
    args: argparse.Namespace,
) -> None:
    print(f"\nmachine: {machine()}")
    print(f"{args.calls} calls per measurement, median of {args.rounds} interleaved rounds; one gateway worker\n")
    print(f"{'op':<8}{'c':>3}  {'client':<19}{'wall ms':>9}{'CPU ms':>9}{'wall/floor':>12}{'CPU/floor':>11}")
    worst_wall = worst_cpu = 0.0
    for (op, name, concurrency), samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        floor = results[(op, "floor", concurrency)]
        floor_wall = statistics.median(s[0] for s in floor)
        floor_cpu = statistics.median(s[1] for s in floor)
        print(
            f"{op:<8}{concurrency:>3}  {name:<19}{wall:>9.3f}{cpu:>9.3f}"
            f"{wall / floor_wall:>11.2f}x{cpu / floor_cpu:>10.2f}x"
        )
        if name == "stashkit":
            worst_wall = max(worst_wall, wall / floor_wall)
            worst_cpu = max(worst_cpu, cpu / floor_cpu)
        if name == "floor":
            print()
    print("import cost over what every function imports anyway (fresh interpreters, -X importtime, median of 7):")
    for name, ms in imports.items():
        print(f"  {name:<46}{ms:>7.1f} ms")
    print(f"\n{args.exits} fresh processes each: import, build the client, one GET, close, exit (medians):")
    for which, run in fresh.items():
        clean = run.exit_codes.get(0, 0)
        others = ", ".join(f"exit {code}: {n}" for code, n in sorted(run.exit_codes.items()) if code != 0) or "none"
        print(
            f"  {which:<10} import {run.import_ms:7.1f} ms, first call {run.first_call_ms:6.1f} ms, "
            f"clean exits {clean} of {sum(run.exit_codes.values())} (others: {others})"
        )
    print("\ntargets (stashkit, worst of GET/SET/EVALSHA at concurrency 1 and 16):")
    print(
        f"  wall time per call   {worst_wall:.2f}x the floor   at most 2x     {'met' if worst_wall <= 2 else 'MISSED'}"
    )
    print(
        f"  CPU per call         {worst_cpu:.2f}x the floor   at most 2.5x   {'met' if worst_cpu <= 2.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
