"""Benchmark: time to the 202 of a signed webhook delivery through functions/webhooks.py, beside a bare
handler measured in the same run.

    .venv/bin/python bench/webhooks.py [--deliveries N] [--rounds R]

Starts its own redis-server, gateway, QStash emulator and functions server, plus a bare uvicorn app whose
handler checks the same GitHub signature and answers 202 at once (no replay check, no publish: the floor
any receiver is compared with). Each round sends N deliveries with distinct delivery ids, one at a time
over one keep-alive connection, to each destination in turn; the job's queue is paused, so no job run
competes with the deliveries. Printed: p50 and p99 of the time to the answer for both (every round's
samples together), and the Redis round trips per accepted delivery counted at the gateway (target 1
besides the QStash publish) and the p99 target (under 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.http_client import HttpConnection, machine  # noqa: E402
from bench.stack import LocalStack  # noqa: E402

PUBLIC_URL = "https://stashkit.bench"
SECRET = "bench-webhook-secret"
QUEUE = "bench-webhooks"
TARGET_ROUND_TRIPS = 1
TARGET_P99_MS = 20.0
JOBS_MODULE = f"""
from shared.jobs import job


@job("bench.webhook", retries=3, timeout_s=10, queue={QUEUE!r})
async def webhook(payload, ctx):
    return None
"""
BARE_APP = f"""
import hashlib, hmac
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def bare(request):
    body = await request.body()
    expected = "sha256=" + hmac.new({SECRET!r}.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
        return Response(b"{{}}", 401, media_type="application/json")
    return Response(b'{{"message_id":"bare","job":"bench.webhook"}}', 202, media_type="application/json")


app = Starlette(routes=[Route("/api/webhooks/bench", bare, methods=["POST"])])
"""


def signed_requests(connection: HttpConnection, count: int) -> list[bytes]:
    """`count` ready-to-send GitHub deliveries, each with its own delivery id (all accepted)."""
    requests = []
    for n in range(count):
        body = json.dumps({"ref": "refs/heads/main", "n": n, "commits": [{"id": uuid.uuid4().hex}]}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4())}
        requests.append(connection.request("/api/webhooks/bench", body, headers))
    return requests


async def one_round(port: int, count: int) -> list[float]:
    """Milliseconds to each answer, for `count` deliveries sent one after another."""
    connection = await HttpConnection.open(port)
    try:
        latencies = []
        for raw in signed_requests(connection, count):
            started = time.perf_counter()
            status, body = await connection.send(raw)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 202, (status, body)
        return latencies
    finally:
        connection.close()


async def measure(stack: LocalStack, deliveries: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    await one_round(stack.functions_port, 20)  # warm-up: imports, the script loaded, connections open
    await one_round(stack.bare_port, 20)
    ours: list[float] = []
    bare: list[float] = []
    round_trips: list[float] = []
    for _ in range(rounds):
        before = stack.gateway_requests()
        ours += await one_round(stack.functions_port, deliveries)
        round_trips.append((stack.gateway_requests() - before) / deliveries)
        bare += await one_round(stack.bare_port, deliveries)
    return ours, bare, round_trips


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stashkit-bench-webhooks-") as tmp:
        stack = LocalStack(Path(tmp), PUBLIC_URL)
        stack.write("bench_webhook_jobs", JOBS_MODULE)
        stack.write("bare_webhooks", BARE_APP)
        sources = {"bench": {"scheme": "github", "secrets": [SECRET], "job": "bench.webhook"}}
        env = {"STASHKIT_JOB_MODULES": "bench_webhook_jobs", "STASHKIT_WEBHOOK_SOURCES": json.dumps(sources)}
        try:
            stack.start(env, bare_app="bare_webhooks:app")
            # The job's queue stays paused: no job run competes with the deliveries being timed.
            stack.qstash("POST", "/v2/queues", json={"queueName": QUEUE, "paused": True}).raise_for_status()
            ours, bare, round_trips = asyncio.run(measure(stack, args.deliveries, args.rounds))
        finally:
            stack.stop()
    print(f"machine: {machine()}")
    print(f"{args.deliveries} signed GitHub deliveries per round, one at a time, {args.rounds} alternating rounds\n")
    print(f"{'destination':<52} {'p50 ms':>8} {'p99 ms':>8}")
    rows = [("functions/webhooks.py: verify, replay check, publish", ours), ("bare handler: verify only", bare)]
    for label, samples in rows:
        print(f"{label:<52} {percentile(samples, 50):>8.2f} {percentile(samples, 99):>8.2f}")
    p99 = percentile(ours, 99)
    p50_ratio, p99_ratio = percentile(ours, 50) / percentile(bare, 50), p99 / percentile(bare, 99)
    print(f"\np50 {p50_ratio:.1f}x, p99 {p99_ratio:.1f}x the bare handler's")
    print(
        f"p99 to the 202: {p99:.2f} ms (target < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'})"
    )
    trips = max(round_trips)
    verdict = "met" if trips <= TARGET_ROUND_TRIPS else "MISSED"
    print(f"Redis round trips per accepted delivery: {trips:.2f} (target {TARGET_ROUND_TRIPS} besides the publish: "
          f"{verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
