"""The dead-letter store: record, look up, list, delete and purge entries, each one script call.

    letters = DeadLetters()
    entry_id = await letters.record(DeadLetter(message_id=..., job="emails.send", body=b"{}", attempts=4))
    page = await letters.list(job="emails.send", status="dead", limit=50)
    more = await letters.list(job="emails.send", status="dead", cursor=page.next_cursor)
    await letters.redrive([entry_id])          # publish it again, once (shared/jobs/dlq/redrive.py)
    await letters.reconcile()                  # pick up what QStash's DLQ has and we lack

Only `RedisUnavailable` is an outage: the callback answers 503 and QStash retries it, so nothing is lost.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared import keys
from shared.clock import Clock, RedisClock
from shared.config import DlqSettings, dlq_settings
from shared.errors import InvalidInput
from shared.jobs.dlq.model import (
    STATUSES,
    DeadLetter,
    Entry,
    EntryFilter,
    Page,
    Status,
    decode_cursor,
    encode_cursor,
    entry_from_fields,
    entry_id,
    flat_to_dict,
    letter_fields,
)
from shared.jobs.dlq.scripts import DELETE, LIST, PURGE, RECORD
from shared.redis import RedisProvider, get_redis
from shared.scripts import ScriptArg

if TYPE_CHECKING:
    from shared.jobs.dlq.reconcile import ReconcileCounts
    from shared.jobs.dlq.redrive import PublishJob, RedriveReport

MAX_PAGE = 100  # entries per list call: bodies come along, and a job body may be large
PURGE_BATCH = 500  # entries buried per script call, so one purge never blocks Redis for long


@functools.cache
def _settings() -> DlqSettings:
    return dlq_settings()


class DeadLetters:
    """Dead letters in Redis. Injectable: `redis`, `clock` (whose time the scripts use), `retention_days`
    (else STASHKIT_DLQ_RETENTION_DAYS), `publish` (how a redrive publishes: QStash, or eager mode)."""

    def __init__(
        self,
        *,
        redis: RedisProvider = get_redis,
        clock: Clock | None = None,
        retention_days: int | None = None,
        publish: PublishJob | None = None,
    ) -> None:
        self.redis = redis
        self._clock = clock or RedisClock()
        self._retention_days = retention_days
        self._publish = publish

    @property
    def retention_ms(self) -> int:
        days = self._retention_days if self._retention_days is not None else _settings().retention_days
        return days * 86_400_000

    def now_arg(self) -> int | str:
        now = self._clock.script_now_ms()
        return "" if now is None else now

    async def record(self, letter: DeadLetter) -> str:
        """Keep `letter`; its entry id. A message already recorded keeps its one entry (the new report
        only fills what the first lacked), and a deleted one stays deleted."""
        id_, _ = await self.record_outcome(letter)
        return id_

    async def record_outcome(self, letter: DeadLetter, *, created_at_ms: int | None = None) -> tuple[str, str]:
        """`record`, also saying what happened: recorded, duplicate, deleted or expired (the letter, or
        the message created at `created_at_ms`, is older than the retention)."""
        id_ = entry_id(letter.message_id)
        failed = "" if letter.failed_at_ms is None else letter.failed_at_ms
        born = "" if created_at_ms is None else created_at_ms
        args = [self.now_arg(), id_, letter.job, failed, self.retention_ms, born, *letter_fields(letter)]
        script_keys = [keys.dlq_index(), keys.dlq_job_index(letter.job), keys.dlq_entry(id_)]
        raw = await RECORD.run(self.redis(), script_keys, args)
        assert isinstance(raw, list)
        return id_, str(raw[0])

    async def get(self, id_: str) -> Entry | None:
        fields = flat_to_dict(await self.redis().execute(["HGETALL", keys.dlq_entry(id_)]))
        if not fields or fields.get("status") == "deleted":
            return None
        return entry_from_fields(id_, fields)

    async def list(
        self,
        *,
        job: str | None = None,
        since: int | None = None,
        until: int | None = None,
        status: Status | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Entries newest first (by failed_at, epoch ms; `since` inclusive, `until` exclusive). Filtering
        happens in the script, so a page is full whenever that many entries match; `next_cursor` is
        None on the last page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        where = _checked(EntryFilter(job=job, since_ms=since, until_ms=until, status=status))
        position = decode_cursor(cursor) if cursor else None
        raw = await LIST.run(self.redis(), [_index(where)], self._scan_args(where, position, limit))
        assert isinstance(raw, list)
        entries = [entry_from_fields(str(row[0]), flat_to_dict(row[1:])) for row in raw[2:]]
        last = entries[-1] if entries and raw[1] == 1 else None
        next_cursor = encode_cursor(last.letter.failed_at_ms or 0, last.id) if last else None
        return Page(entries=entries, next_cursor=next_cursor)

    async def delete(self, id_: str) -> bool:
        """Forget an entry (a tombstone stays until its expiry, so nothing brings it back); False if
        there was none."""
        raw = await DELETE.run(self.redis(), [keys.dlq_index()], [keys.DLQ_PREFIX, self.retention_ms, id_])
        return raw == 1

    async def purge(
        self,
        *,
        job: str | None = None,
        since: int | None = None,
        until: int | None = None,
        status: Status | None = None,
    ) -> int:
        """Delete every entry that matches (all of them without filters); how many were deleted."""
        where = _checked(EntryFilter(job=job, since_ms=since, until_ms=until, status=status))
        total, position = 0, None
        while True:
            args = self._scan_args(where, position, PURGE_BATCH)
            raw = await PURGE.run(self.redis(), [_index(where)], args)
            assert isinstance(raw, list)
            total += int(raw[0])
            if raw[1] != 1:
                return total
            position = (int(float(raw[2])), str(raw[3]))

    async def redrive(
        self,
        ids: Sequence[str] | None = None,
        *,
        job: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
    ) -> builtins.list[str]:
        """Publish entries again (by id, or the first `limit` dead ones matching the filter); the new
        message ids. An entry is published once, however often or concurrently it is redriven."""
        report = await self.redrive_report(ids, job=job, since=since, until=until, limit=limit)
        return report.message_ids

    async def redrive_report(
        self,
        ids: Sequence[str] | None = None,
        *,
        job: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
    ) -> RedriveReport:
        """`redrive`, saying which entry became which message and why any was skipped."""
        from shared.jobs.dlq.redrive import redrive_entries  # the QStash SDK loads only for a redrive

        if ids is None:
            page = await self.list(job=job, since=since, until=until, status="dead", limit=limit)
            ids, more = [e.id for e in page.entries], page.next_cursor is not None
        else:
            more = False
        return await redrive_entries(self, list(dict.fromkeys(ids)), self._publish, more=more)

    async def reconcile(self) -> ReconcileCounts:
        """Record every message in QStash's DLQ addressed to this deployment's jobs that we lack."""
        from shared.jobs.dlq.reconcile import reconcile

        return await reconcile(self)

    def _scan_args(self, where: EntryFilter, position: tuple[int, str] | None, limit: int) -> builtins.list[ScriptArg]:
        def text(value: object) -> ScriptArg:
            return "" if value is None else str(value)

        score, id_ = position or (None, None)
        return [self.now_arg(), keys.DLQ_PREFIX, self.retention_ms, text(where.since_ms), text(where.until_ms),
                text(where.status), text(where.job), text(score), text(id_), limit]  # fmt: skip


def _index(where: EntryFilter) -> str:
    return keys.dlq_job_index(where.job) if where.job else keys.dlq_index()


def _checked(where: EntryFilter) -> EntryFilter:
    if where.status is not None and where.status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    for name, value in (("since", where.since_ms), ("until", where.until_ms)):
        if value is not None and value < 0:
            raise InvalidInput(f"{name} is epoch milliseconds, at least 0", field=name)
    return where
