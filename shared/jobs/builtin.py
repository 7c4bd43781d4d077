"""The jobs every deployment has (loaded before `STASHKIT_JOB_MODULES`).

`stashkit.dlq_digest`, hourly: posts how many runs of each job died since the last digest to
`STASHKIT_ALERT_WEBHOOK_URL` (shared/jobs/dlq/digest.py); without that variable it does nothing.
Imports stay light: every function that runs jobs loads this module.
"""

from __future__ import annotations

from typing import Any

from shared.jobs.registry import JobContext, job, schedule

DLQ_DIGEST = "stashkit.dlq_digest"


@schedule("0 * * * *", job=DLQ_DIGEST, schedule_id=DLQ_DIGEST)
@job(DLQ_DIGEST, retries=3, timeout_s=30)
async def dlq_digest(payload: Any, ctx: JobContext) -> None:
    from shared.jobs.dlq import DeadLetters
    from shared.jobs.dlq.digest import send_digest
    from shared.jobs.publish import settings

    await send_digest(DeadLetters(), settings().alert_webhook_url)
