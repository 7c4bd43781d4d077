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
from bench.stack import LocalStack  # noqa: E402
from emulators.qstash.config import DEFAULT_TOKEN  # noqa: E402

PUBLIC_URL = "https://stashkit.bench"
BARE_URL = "https://bare.bench"
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


async def one_round(http: httpx.AsyncClient, stack: LocalStack, base_url: str, jobs: int, parallelism: int) -> float:
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


async def measure(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.qstash_port}", headers=headers) as http:
        await one_round(http, stack, PUBLIC_URL, 20, args.parallelism)  # warm-up: imports, scripts loaded
        await one_round(http, stack, BARE_URL, 20, args.parallelism)
        times: dict[str, list[float]] = {"stashkit": [], "bare": []}
        round_trips: list[float] = []
        for _ in range(args.rounds):
            before = stack.gateway_requests()
            times["stashkit"].append(await one_round(http, stack, PUBLIC_URL, args.jobs, args.parallelism))
            round_trips.append((stack.gateway_requests() - before) / args.jobs)
            times["bare"].append(await one_round(http, stack, BARE_URL, args.jobs, args.parallelism))
    return {"times": times, "round_trips": round_trips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stashkit-bench-jobs-") as tmp:
        stack = LocalStack(Path(tmp), PUBLIC_URL)
        stack.write("bench_jobs", JOBS_MODULE)
        stack.write("bare_app", BARE_APP)
        try:
            stack.start({"STASHKIT_JOB_MODULES": "bench_jobs"}, bare_app="bare_app:app", bare_url=BARE_URL)
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
