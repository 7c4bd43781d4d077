"""Redrive: publish dead letters again, each at most once, however often or concurrently it is asked.

Why an entry is never enqueued twice:
1. **Claim before publishing.** One script moves each entry from `dead` to `redriving` under this
   redrive's owner token (shared/jobs/dlq/scripts.py CLAIM). Of two redrives at the same moment only
   one claims; the other reports the entry `busy`. A `redriven` entry is never claimed again.
2. **One deduplication id per entry** (`stashkit-redrive-<entry id>`): if a redriver dies between
   QStash accepting the message and recording it, or QStash's answer is lost (a timeout), the entry
   stays `redriving` with its claim lapsed. A later redrive may take it over only while QStash's
   10-minute deduplication window (reference qstash.md §5.1) still covers every earlier publish of it
   (TAKEOVER_WINDOW_MS after the first claim), so QStash answers with the original message id instead
   of enqueueing again. After that window such an entry stays `redriving` and is reported `stuck`:
   whether it ran can only be read in QStash's logs, so a person decides (delete it, or enqueue anew).
3. **Undo only when nothing was published**: a refused connection, a 4xx from QStash, an unknown job.
   Then the entry is `dead` again and a later redrive starts afresh.

A claim outlives the QStash client's timeout (shared/qstash.py: 5 s connect, 60 s read), so a live
publish is never taken over.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from shared import keys
from shared.errors import ConfigurationError, Problem, QStashUnavailable
from shared.jobs.dlq.scripts import CLAIM, SETTLE
from shared.jobs.registry import JobOptions, get_job
from shared.jobs.store import JobStore
from shared.scripts import ScriptArg

if TYPE_CHECKING:
    from shared.jobs.dlq.store import DeadLetters

CLAIM_MS = 120_000
TAKEOVER_WINDOW_MS = 9 * 60_000  # QStash deduplicates for 10 minutes; one minute of margin
CLAIM_CHUNK = 10  # entries claimed per script call: claims must not lapse while earlier ones publish
Settlement = Literal["done", "undo", "release"]
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class PublishJob(Protocol):
    """How a redrive publishes one run of a job: `shared.jobs.publish.publish_job` is one."""

    async def __call__(self, name: str, body: bytes, options: JobOptions, *, dedup_id: str | None) -> str: ...


@dataclass(frozen=True, slots=True)
class Redriven:
    id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class Skipped:
    id: str
    reason: str  # redriven (already), busy, stuck, missing, unknown job, QStash unavailable, ...


@dataclass(slots=True)
class RedriveReport:
    redriven: list[Redriven] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    more: bool = False  # a filtered redrive stopped at its limit: more dead entries match

    @property
    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.redriven]


async def publish_default(name: str, body: bytes, options: JobOptions, *, dedup_id: str | None) -> str:
    """Publish through QStash, or run in-process in eager mode (users' tests), as an enqueue would."""
    from shared.jobs.eager import is_eager, run_eagerly
    from shared.jobs.publish import publish_job

    if is_eager():
        return await run_eagerly(get_job(name), body, dedup_id=dedup_id)
    return await publish_job(name, body, options, dedup_id=dedup_id)


def dedup_id(entry_id: str) -> str:
    return f"stashkit-redrive-{entry_id}"


async def redrive_entries(
    letters: DeadLetters, ids: Sequence[str], publish: PublishJob | None, *, more: bool = False
) -> RedriveReport:
    report = RedriveReport(more=more)
    outage: QStashUnavailable | None = None
    for start in range(0, len(ids), CLAIM_CHUNK):
        chunk = ids[start : start + CLAIM_CHUNK]
        if outage is not None:  # QStash is down: claim nothing more
            report.skipped += [Skipped(i, "QStash unavailable") for i in chunk]
            continue
        outage = await _redrive_chunk(letters, chunk, publish or publish_default, report)
    if outage is not None and not report.redriven:
        raise outage
    return report


async def _redrive_chunk(
    letters: DeadLetters, ids: Sequence[str], publish: PublishJob, report: RedriveReport
) -> QStashUnavailable | None:
    owner = uuid.uuid4().hex
    args: list[ScriptArg] = [letters.now_arg(), keys.DLQ_PREFIX, owner, CLAIM_MS, TAKEOVER_WINDOW_MS, *ids]
    raw = await CLAIM.run(letters.redis(), [keys.dlq_index()], args)
    assert isinstance(raw, list)
    settled: list[ScriptArg] = []
    published: list[tuple[str, str]] = []  # (message id, job)
    outage: QStashUnavailable | None = None
    try:
        for row in raw[1:]:
            id_, outcome = str(row[0]), str(row[1])
            if outcome != "claimed":
                report.skipped.append(Skipped(id_, "already redriven" if outcome == "redriven" else outcome))
                continue
            if outage is not None:  # QStash is down: publish nothing more, give the claims back
                settled += [id_, "undo", ""]
                report.skipped.append(Skipped(id_, "QStash unavailable"))
                continue
            settled += [id_, "release", ""]  # until the publish says otherwise (a bug may escape it)
            action, message_id, outage = await _publish_one(id_, row, publish, report)
            settled[-2:] = [action, message_id]
            if action == "done":
                published.append((message_id, str(row[2])))
    finally:  # also when a bug escapes: no claim is left held for nothing
        if settled:
            await SETTLE.run(letters.redis(), [keys.dlq_index()], [letters.now_arg(), keys.DLQ_PREFIX, owner, *settled])
    store = JobStore(redis=letters.redis)
    for message_id, job in published:  # a status record, as an enqueue writes (eager mode already did)
        await store.mark_queued(message_id, job)
    return outage


async def _publish_one(
    id_: str, row: list[str], publish: PublishJob, report: RedriveReport
) -> tuple[Settlement, str, QStashUnavailable | None]:
    from qstash.errors import QStashError

    job_name, text, b64 = str(row[2]), str(row[3]), str(row[4])
    body = base64.b64decode(b64) if b64 else text.encode()
    try:
        message_id = await publish(job_name, body, get_job(job_name).options, dedup_id=dedup_id(id_))
    except (Problem, ConfigurationError, QStashError) as exc:  # refused before anything was enqueued
        report.skipped.append(Skipped(id_, str(exc)))
        return "undo", "", None
    except QStashUnavailable as exc:
        never_sent = isinstance(exc.__cause__, _NEVER_SENT)
        report.skipped.append(Skipped(id_, "QStash unavailable"))
        return ("undo" if never_sent else "release"), "", exc
    report.redriven.append(Redriven(id_, message_id))
    return "done", message_id, None
