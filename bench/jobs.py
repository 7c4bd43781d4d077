"""Benchmark: jobs end to end through the QStash emulator and functions/jobs.py, beside a bare destination
measured in the same run.

    .venv/bin/python bench/jobs.py [--jobs N] [--parallelism P] [--rounds R]

Starts its own redis-server, gateway, QStash emulator (routing the public URL to the local servers) and
functions server, plus a bare uvicorn app whose handler answers 200 at once (no signature check, no
claim: the floor any job runner is compared with). Each round enqueues N messages on a paused QStash
queue of parallelism P for each destination, resumes it, and times until the emulator has delivered all
of them; destinations alternate over the rounds and the median round is shown. Printed: jobs per second
for both, the overhead per job (the difference of the per-job times at the same parallelism), and the
Redis round trips per successful job counted at the gateway (target at most 2: claim and finish).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.http_client import machine  # noqa: E402
from emulators.qstash.config import DEFAULT_CURRENT_SIGNING_KEY, DEFAULT_NEXT_SIGNING_KEY, DEFAULT_TOKEN  # noqa: E402
from tests.servers import Process, free_port, python_module, redis_server  # noqa: E402

PUBLIC_URL = "https://stashkit.bench"
BARE_URL = "https://bare.bench"
REDIS_TOKEN = "bench-token"
TARGET_ROUND_TRIPS = 2
JOBS_MODULE = """
from shared.jobs import job


@job("bench.noop", retries=3, timeout_s=10)
async def noop(payload, ctx):
    return None
"""
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def bare(request):
    await request.body()
    return Response(b'{"status":"succeeded"}', media_type="application/json")


app = Starlette(routes=[Route("/api/jobs/bench.noop", bare, methods=["POST"])])
"""


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.processes: list[Process] = []
        self.workdir = workdir
        (workdir / "bench_jobs.py").write_text(JOBS_MODULE)
        (workdir / "bare_app.py").write_text(BARE_APP)

    def start(self) -> None:
        node = self._run(redis_server())
        self.gateway_port, self.qstash_port = free_port(), free_port()
        self.functions_port, bare_port = free_port(), free_port()
        redis_url = f"redis://127.0.0.1:{node.port}"
        self._run(python_module("emulators.redis_rest", self.gateway_port, "--redis-url", redis_url, "--token",
                                REDIS_TOKEN))  # fmt: skip
        routes = [f"{PUBLIC_URL}=http://127.0.0.1:{self.functions_port}", f"{BARE_URL}=http://127.0.0.1:{bare_port}"]
        self._run(python_module("emulators.qstash", self.qstash_port, *(a for r in routes for a in ("--route", r))))
        env = {
            "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{self.gateway_port}",
            "UPSTASH_REDIS_REST_TOKEN": REDIS_TOKEN,
            "QSTASH_URL": f"http://127.0.0.1:{self.qstash_port}",
            "QSTASH_TOKEN": DEFAULT_TOKEN,
            "QSTASH_CURRENT_SIGNING_KEY": DEFAULT_CURRENT_SIGNING_KEY,
            "QSTASH_NEXT_SIGNING_KEY": DEFAULT_NEXT_SIGNING_KEY,
            "STASHKIT_PUBLIC_URL": PUBLIC_URL,
            "STASHKIT_JOB_MODULES": "bench_jobs",
            "PYTHONPATH": str(self.workdir),
        }
        self._run(python_module("emulators.functions_server", self.functions_port, env=env))
        bare = [sys.executable, "-m", "uvicorn", "--app-dir", str(self.workdir), "bare_app:app", "--port",
                str(bare_port), "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
        self._run(Process(bare, bare_port))

    def _run(self, process: Process) -> Process:
        self.processes.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


async def one_round(http: httpx.AsyncClient, stack: Stack, base_url: str, jobs: int, parallelism: int) -> float:
    """Seconds from resuming a paused queue holding `jobs` messages to the last delivery."""
    queue = f"bench-{time.monotonic_ns()}"
    await http.post("/v2/queues", json={"queueName": queue, "parallelism": parallelism, "paused": True})
    batch = [{"destination": f"{base_url}/api/jobs/bench.noop", "queue": queue, "body": json.dumps({"n": i}),
              "headers": {"Content-Type": "application/json"}} for i in range(jobs)]  # fmt: skip
    for start in range(0, jobs, 100):
        (await http.post("/v2/batch", json=batch[start : start + 100])).raise_for_status()
    delivered = (await http.get("/__stats")).json()["delivered"]
    started = time.perf_counter()
    await http.post(f"/v2/queues/{queue}/resume")
    # Polling another process's counter: there is no event to wait on.
    while (await http.get("/__stats")).json()["delivered"] < delivered + jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


def gateway_requests(port: int) -> int:
    stats = httpx.get(f"http://127.0.0.1:{port}/__stats", headers={"Authorization": f"Bearer {REDIS_TOKEN}"})
    total: int = stats.json()["total"]["requests"]
    return total


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.qstash_port}", headers=headers) as http:
        await one_round(http, stack, PUBLIC_URL, 20, args.parallelism)  # warm-up: imports, scripts loaded
        await one_round(http, stack, BARE_URL, 20, args.parallelism)
        times: dict[str, list[float]] = {"stashkit": [], "bare": []}
        round_trips: list[float] = []
        for _ in range(args.rounds):
            before = gateway_requests(stack.gateway_port)
            times["stashkit"].append(await one_round(http, stack, PUBLIC_URL, args.jobs, args.parallelism))
            round_trips.append((gateway_requests(stack.gateway_port) - before) / args.jobs)
            times["bare"].append(await one_round(http, stack, BARE_URL, args.jobs, args.parallelism))
    return {"times": times, "round_trips": round_trips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stashkit-bench-jobs-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start()
            result = asyncio.run(measure(stack, args))
        finally:
            stack.stop()
    ours, bare = statistics.median(result["times"]["stashkit"]), statistics.median(result["times"]["bare"])
    trips = max(result["round_trips"])
    print(f"machine: {machine()}")
    print(f"{args.jobs} jobs per round through a QStash queue of parallelism {args.parallelism}, "
          f"median of {args.rounds} alternating rounds\n")  # fmt: skip
    rows = [("functions/jobs.py: verify, claim, run, finish", ours), ("bare handler: no signature, no claim", bare)]
    print(f"{'destination':<42} {'jobs/s':>8} {'ms per job':>11}")
    for label, seconds in rows:
        print(f"{label:<42} {args.jobs / seconds:>8,.0f} {seconds / args.jobs * 1000:>11.2f}")
    overhead_ms = (ours - bare) / args.jobs * 1000
    print(
        f"\noverhead per job: {overhead_ms:.2f} ms at parallelism {args.parallelism} ({bare / ours:.2f}x the bare rate)"
    )
    verdict = "met" if trips <= TARGET_ROUND_TRIPS else "MISSED"
    print(f"Redis round trips per successful job: {trips:.2f} (target <= {TARGET_ROUND_TRIPS}: {verdict})")


if __name__ == "__main__":
    main()
