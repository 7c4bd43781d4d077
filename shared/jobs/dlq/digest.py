"""The dead-letter digest: how many runs of each job died since the last digest, posted to a webhook.

The window is counted in one script and the mark moves only after the webhook took the digest (a
compare-and-set, so two digests at once never lose a window): a webhook that is down makes the job fail
and QStash retry it, and the retry reports the whole window since the last digest that got through. No
webhook configured, nothing to do; nothing new, nothing sent. The first digest covers the retention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from shared import keys
from shared.jobs.dlq.scripts import DIGEST_ADVANCE, DIGEST_COUNT
from shared.jobs.dlq.store import DeadLetters

WEBHOOK_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    since_ms: int | None  # the last digest's mark (None: this is the first digest)
    until_ms: int
    counts: dict[str, int] = field(default_factory=dict)  # dead letters per job, in the window

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def payload(self) -> dict[str, object]:
        """JSON for the webhook: figures for machines, and `text` for chat tools (Slack, Discord, Teams)."""
        per_job = ", ".join(f"{job} {n}" for job, n in sorted(self.counts.items()))
        since = "the start of the retention" if self.since_ms is None else _iso(self.since_ms)
        text = f"stashkit: {self.total} dead letter{'s' * (self.total != 1)} since {since}: {per_job}"
        return {"text": text, "since": self.since_ms, "until": self.until_ms, "total": self.total,
                "jobs": dict(sorted(self.counts.items()))}  # fmt: skip


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def send_digest(letters: DeadLetters, webhook_url: str | None) -> Digest | None:
    """Post the digest to `webhook_url` if anything died since the last one; the digest counted (None
    when no webhook is configured). A webhook answering non-2xx raises, so the job is retried."""
    if webhook_url is None:
        return None
    args = [letters.now_arg(), keys.DLQ_PREFIX, letters.retention_ms]
    raw = await DIGEST_COUNT.run(letters.redis(), [keys.dlq_index(), keys.dlq_digest()], args)
    assert isinstance(raw, list)
    now, mark = int(raw[0]), str(raw[1])
    counts = {str(job): int(n) for job, n in zip(raw[2::2], raw[3::2], strict=True)}
    digest = Digest(since_ms=int(mark) if mark else None, until_ms=now, counts=counts)
    if counts:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S) as client:
            (await client.post(webhook_url, json=digest.payload())).raise_for_status()
    await DIGEST_ADVANCE.run(letters.redis(), [keys.dlq_digest()], [mark, now - 1, letters.retention_ms])
    return digest
