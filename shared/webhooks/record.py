"""The built-in job `webhooks.record`: keeps each source's newest deliveries in Redis, so the default
configuration does something useful (and a user's own job can start from what it stored).

The payload is the receiver's (shared/webhooks/receiver.py `job_payload`), stored as JSON at the head
of a per-source list capped at `WEBHOOK_LOG_MAX` entries, which expires a week after its last delivery
(shared/keys.py `webhook_log`). One pipeline: LPUSH, LTRIM, EXPIRE. Imports stay light: every function
that runs jobs loads this module.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shared import keys
from shared.errors import PermanentFailure
from shared.jobs.registry import JobContext, job

RECORD = "webhooks.record"


@job(RECORD, retries=3, timeout_s=10)
async def record(payload: Any, ctx: JobContext) -> None:
    from shared.redis import get_redis

    if not isinstance(payload, dict) or not isinstance(payload.get("source"), str):
        raise PermanentFailure("a webhooks.record payload is what the webhooks function sends")
    entry = msgspec.json.encode({**payload, "message_id": ctx.message_id})
    key = keys.webhook_log(payload["source"])
    pipeline = get_redis().pipeline()
    pipeline.execute(["LPUSH", key, entry.decode()])
    pipeline.execute(["LTRIM", key, 0, keys.WEBHOOK_LOG_MAX - 1])
    pipeline.execute(["EXPIRE", key, keys.WEBHOOK_LOG_TTL_S])
    await pipeline.exec()


async def recorded(source: str, count: int = 100) -> list[dict[str, Any]]:
    """The newest `count` deliveries `webhooks.record` kept for `source`, newest first."""
    from shared.redis import get_redis

    raw = await get_redis().execute(["LRANGE", keys.webhook_log(source), 0, count - 1])
    assert isinstance(raw, list)
    return [msgspec.json.decode(item) for item in raw]
