"""Dead letters as JSON, the same for the HTTP API (functions/dlq.py) and the command line.

Times are epoch milliseconds (`failed_at`, `redriven_at`, and the `since`/`until` filters), as
everywhere else in this library. `body` is the job's payload as text when it is UTF-8 (a job's payload
is JSON, so nearly always); otherwise `body` is null and `body_base64` holds it.
"""

from __future__ import annotations

import base64

import msgspec

from shared.jobs.dlq.model import Entry, Page, Status
from shared.jobs.dlq.reconcile import ReconcileCounts
from shared.jobs.dlq.redrive import RedriveReport


class EntryBody(msgspec.Struct):
    id: str
    job: str
    message_id: str
    attempts: int
    status: Status
    error: str | None
    body: str | None
    body_base64: str | None
    failed_at: int
    redriven_as: str | None
    redriven_at: int | None
    response_status: int | None
    response_body: str | None
    dlq_id: str | None


class EntriesPage(msgspec.Struct):
    entries: list[EntryBody]
    next_cursor: str | None


class RedrivenBody(msgspec.Struct):
    id: str
    message_id: str


class SkippedBody(msgspec.Struct):
    id: str
    reason: str


class RedriveBody(msgspec.Struct):
    message_ids: list[str]
    redriven: list[RedrivenBody]
    skipped: list[SkippedBody]
    more: bool  # a filtered redrive stopped at its limit: call again for the rest


class ReconcileBody(msgspec.Struct):
    seen: int
    recorded: int
    known: int
    ignored: int


def entry_body(entry: Entry) -> EntryBody:
    letter = entry.letter
    try:
        text, encoded = letter.body.decode(), None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(letter.body).decode()
    return EntryBody(
        id=entry.id,
        job=letter.job,
        message_id=letter.message_id,
        attempts=letter.attempts,
        status=entry.status,
        error=letter.error,
        body=text,
        body_base64=encoded,
        failed_at=letter.failed_at_ms or 0,
        redriven_as=entry.redriven_as,
        redriven_at=entry.redriven_at_ms,
        response_status=letter.response_status,
        response_body=letter.response_body,
        dlq_id=letter.dlq_id,
    )


def page_body(page: Page) -> EntriesPage:
    return EntriesPage(entries=[entry_body(e) for e in page.entries], next_cursor=page.next_cursor)


def redrive_body(report: RedriveReport) -> RedriveBody:
    return RedriveBody(
        message_ids=report.message_ids,
        redriven=[RedrivenBody(r.id, r.message_id) for r in report.redriven],
        skipped=[SkippedBody(s.id, s.reason) for s in report.skipped],
        more=report.more,
    )


def reconcile_body(counts: ReconcileCounts) -> ReconcileBody:
    return ReconcileBody(seen=counts.seen, recorded=counts.recorded, known=counts.known, ignored=counts.ignored)
