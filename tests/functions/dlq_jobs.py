"""Jobs the dead-letter and schedule tests run (the `STASHKIT_JOB_MODULES` of their functions server).

Schedules are declared from `DLQ_TEST_SCHEDULES` (a JSON list of `schedule(...)` arguments), so each
`python -m shared schedules sync` a test runs can see a different set of declarations.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shared.jobs import JobContext, job, schedule
from shared.redis import get_redis


@job("dlq.fails", retries=1, timeout_s=5)
async def fails(payload: Any, ctx: JobContext) -> None:
    raise RuntimeError(f"boom {payload}")


@job("dlq.toggle", retries=1, timeout_s=5)
async def toggle(payload: Any, ctx: JobContext) -> None:
    """Fails while the Redis key `payload["flag"]` says "fail"; each run that succeeds counts itself."""
    redis = get_redis()
    if await redis.execute(["GET", payload["flag"]]) == "fail":
        raise RuntimeError("told to fail")
    await redis.execute(["INCR", payload["flag"] + ":runs"])


@job("dlq.tick", retries=0, timeout_s=5, flow_control={"key": "dlq-tick", "parallelism": 2})
async def tick(payload: Any, ctx: JobContext) -> None:
    await get_redis().execute(["INCR", payload["counter"]])


for declared in json.loads(os.environ.get("DLQ_TEST_SCHEDULES", "[]")):
    schedule(**declared)
