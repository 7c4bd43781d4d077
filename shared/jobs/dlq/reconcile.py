"""Reconcile: record what QStash's own DLQ holds and the store lacks.

A failure callback can be lost (our endpoint was down longer than QStash retried it, or its body was
over the function's size limit), but QStash keeps the message in its DLQ. Reconcile pages through that
DLQ with the SDK's `dlq.list` and records every message addressed to this deployment's jobs
(`STASHKIT_PUBLIC_URL/api/jobs/<name>`; QStash's DLQ is account-wide, and other deployments' and
other apps' messages are left alone). A message already known (recorded, redriven or deleted) stays as
it is; one created before the retention period is ignored, so a redriven or deleted entry whose
tombstone has expired cannot come back.

QStash's DLQ does not say how many attempts ran: a reconciled entry counts `maxRetries + 1`, and its
`failed_at` is when it was recorded.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.jobs.dlq.callback import describe_failure, job_of_url
from shared.jobs.dlq.model import MAX_RESPONSE_BODY_CHARS, DeadLetter
from shared.jobs.publish import JOBS_PATH, settings
from shared.jobs.store import JobStore
from shared.qstash import get_qstash

if TYPE_CHECKING:
    from qstash.dlq import DlqMessage

    from shared.jobs.dlq.store import DeadLetters

PAGE = 100  # the SDK's documented maximum per call
MAX_PAGES = 10_000  # a bound on a cursor that never ends (a million messages)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileCounts:
    seen: int = 0  # messages in QStash's DLQ
    recorded: int = 0  # new entries
    known: int = 0  # already recorded (or redriven, or deleted)
    ignored: int = 0  # not this deployment's jobs, or older than the retention


async def reconcile(letters: DeadLetters) -> ReconcileCounts:
    prefix = settings().require_public_url() + JOBS_PATH
    counts = {"seen": 0, "recorded": 0, "known": 0, "ignored": 0}
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await get_qstash().dlq.list(cursor=cursor, count=PAGE)
        for message in page.messages:
            counts["seen"] += 1
            counts[await _reconcile_one(letters, message, prefix)] += 1
        if not page.cursor or page.cursor == cursor or not page.messages:
            break
        cursor = page.cursor
    return ReconcileCounts(**counts)


async def _reconcile_one(letters: DeadLetters, message: DlqMessage, prefix: str) -> str:
    job = job_of_url(message.url) if message.url.startswith(prefix) else None
    if job is None:
        return "ignored"
    letter = _letter(message, job)
    _, outcome = await letters.record_outcome(letter, created_at_ms=int(message.created_at))
    if outcome == "recorded":
        await JobStore(redis=letters.redis).mark(letter.message_id, "dead", letter.error)
        return "recorded"
    return "ignored" if outcome == "expired" else "known"


def _letter(message: DlqMessage, job: str) -> DeadLetter:
    body = base64.b64decode(message.body_base64) if message.body_base64 else (message.body or "").encode()
    response = message.response_body
    return DeadLetter(
        message_id=message.message_id,
        job=job,
        body=body,
        attempts=message.max_retries + 1,
        error=describe_failure(message.response_status, response),
        response_status=message.response_status or None,
        response_body=response[:MAX_RESPONSE_BODY_CHARS] if response else None,
        headers=message.headers or {},
        dlq_id=message.dlq_id or None,
    )
