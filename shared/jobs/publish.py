"""Publishing a job run to QStash, addressed to this deployment's jobs function.

Every run is published to `STASHKIT_PUBLIC_URL/api/jobs/<name>` with the job's options as QStash headers
(retries, the per-attempt timeout, a queue or flow control), and with this deployment's dead-letter
endpoint as its failure callback, so a run whose retries run out is kept (functions/dlq.py). The
per-attempt timeout QStash enforces is the job's `timeout_s` plus a margin: the function cancels the
handler itself at `timeout_s` and answers, so QStash hears a 500 rather than cutting the connection.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import msgspec

from shared.config import JobsSettings, jobs_settings
from shared.errors import InvalidInput
from shared.jobs.registry import Job, JobOptions
from shared.jobs.store import JobStore
from shared.qstash import get_qstash

TIMEOUT_MARGIN_S = 5
JOBS_PATH = "/api/jobs/"
DLQ_CALLBACK_PATH = "/api/dlq/callback"


@functools.cache
def settings() -> JobsSettings:
    return jobs_settings()


def job_url(name: str) -> str:
    return settings().require_public_url() + JOBS_PATH + name


async def enqueue(
    job: Job, payload: Any, *, delay_s: float | None, not_before: float | None, dedup_id: str | None
) -> str:
    from shared.jobs.eager import is_eager, run_eagerly  # eager mode: users' own tests

    body = msgspec.json.encode(payload)
    if is_eager():
        return await run_eagerly(job, body, dedup_id=dedup_id)
    message_id = await publish_job(job.name, body, job.options, delay_s=delay_s, not_before=not_before,
                                   dedup_id=dedup_id)  # fmt: skip
    await JobStore().mark_queued(message_id, job.name)
    return message_id


async def publish_job(
    name: str,
    body: bytes,
    options: JobOptions,
    *,
    delay_s: float | None = None,
    not_before: float | None = None,
    dedup_id: str | None = None,
) -> str:
    """Publish one run of the job `name` with `options`; QStash's message id (the original one when
    `dedup_id` repeats within QStash's 10-minute window)."""
    if options.queue is not None and (delay_s is not None or not_before is not None):
        raise InvalidInput("a job on a queue runs in queue order: it takes no delay_s or not_before", field="delay_s")
    if delay_s is not None and not 0 <= delay_s <= 7 * 86_400:
        raise InvalidInput("delay_s must be between 0 and 604800 (7 days)", field="delay_s")
    common: dict[str, Any] = {
        "url": job_url(name),
        "body": body,
        "content_type": "application/json",
        "retries": options.retries,
        "timeout": f"{math.ceil(options.timeout_s) + TIMEOUT_MARGIN_S}s",
        "failure_callback": settings().require_public_url() + DLQ_CALLBACK_PATH,
        "deduplication_id": dedup_id,
    }
    messages = get_qstash().message
    if options.queue is not None:
        response: object = await messages.enqueue(queue=options.queue, **common)
    else:
        delay = f"{math.ceil(delay_s)}s" if delay_s else None
        not_before_s = math.ceil(not_before) if not_before is not None else None
        flow: Any = dict(options.flow_control) if options.flow_control else None  # the SDK's FlowControl
        response = await messages.publish(delay=delay, not_before=not_before_s, flow_control=flow, **common)
    message_id = getattr(response, "message_id", None)  # a URL, never a URL group: one response
    assert isinstance(message_id, str), response
    return message_id
