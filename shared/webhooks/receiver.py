"""Receiving one webhook delivery: verify it, refuse a stale or replayed one, hand the work to a job.

    received = await WebhookReceiver().receive(source, request.headers, body)

1. The signature is checked over the raw bytes (shared/webhooks/schemes.py): 401 if it does not hold.
2. One script, one round trip: refuse a signed timestamp outside the source's tolerance (past or future,
   on Redis's clock, so every instance agrees), else acknowledge a delivery id seen before as a
   duplicate, else record it (SET with a TTL) as received by this request.
3. The job is published to QStash with the delivery's digest as its deduplication id, so even if two
   deliveries raced past the record (they cannot, but a publish can be retried) QStash keeps one.
   If the publish fails, this request's record is removed (one more round trip, on that path only) and
   the error propagates as a 503: the sender retries, and the retry is not taken for a duplicate.
4. A duplicate recorded less than `REPUBLISH_WINDOW_MS` ago is published again with the same
   deduplication id before it is acknowledged: if the first delivery's publish reached QStash, QStash
   answers with that message and enqueues nothing; if its function was killed between the script and
   the publish, this is the publish that was lost. So a crash there loses nothing as long as the sender
   retries within the window (QStash deduplicates for 10 minutes; the window stays inside it), at the
   price of one QStash call per early duplicate and no extra round trip on the accepted path. A
   duplicate older than the window is acknowledged without publishing.

One Redis round trip per accepted delivery besides the publish. The job's own status record is created
by its first delivery's claim (shared/jobs/store.py), not here: that would be a second round trip.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from shared import keys
from shared.clock import Clock, RedisClock
from shared.errors import BadSignature, RedisUnavailable
from shared.redis import RedisProvider, get_redis
from shared.scripts import NOW_MS, Script
from shared.webhooks.schemes import Headers, Verified, body_digest, verify
from shared.webhooks.sources import Source

Outcome = Literal["accepted", "duplicate", "ping", "challenge", "ignored"]

# KEYS: 1 the delivery's marker. ARGV: 1 now ms ("" = Redis TIME), 2 signed timestamp s ("" = none),
# 3 tolerance ms, 4 this request's id, 5 marker TTL ms. Returns {outcome, now ms[, age ms]}: outcome is
# `past` or `future` (timestamp outside the tolerance), `duplicate` (marker present, recorded `age` ms
# ago) or `new` (marker set to "<request id>:<now>").
RECEIVE = Script(
    NOW_MS
    + """
local now = now_ms(ARGV[1])
local signed = tonumber(ARGV[2])
if signed then
  local skew = now - signed * 1000
  if skew > tonumber(ARGV[3]) then return {'past', now} end
  if -skew > tonumber(ARGV[3]) then return {'future', now} end
end
if redis.call('SET', KEYS[1], ARGV[4] .. ':' .. now, 'NX', 'PX', tonumber(ARGV[5])) then return {'new', now} end
local recorded = tonumber(string.match(redis.call('GET', KEYS[1]) or '', ':(%d+)$') or '0')
return {'duplicate', now, now - recorded}
"""
)

# KEYS: 1 the delivery's marker. ARGV: 1 this request's id. Removes the marker only if this request set it.
FORGET = Script(
    """
local marker = redis.call('GET', KEYS[1])
if marker and string.sub(marker, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
# A duplicate younger than this is published again (deduplicated by QStash, whose window is 10 minutes).
REPUBLISH_WINDOW_MS = 9 * 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    outcome: Outcome
    delivery_id: str
    event: str | None
    job: str | None = None
    message_id: str | None = None  # the job's QStash message id (accepted)
    challenge: str | None = None  # Slack's url_verification: what to echo


def job_payload(source: Source, verified: Verified, body: bytes) -> dict[str, Any]:
    """What the job receives: the body's exact bytes (as text if they are UTF-8, else base64)."""
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode(), "base64"
    return {
        "source": source.name,
        "event": verified.event,
        "delivery_id": verified.delivery_id,
        "timestamp_s": verified.timestamp_s,
        "headers": verified.headers,
        "body": text,
        "body_encoding": encoding,
    }


def payload_body(payload: dict[str, Any]) -> bytes:
    """The delivery's raw body back from a job payload (`job_payload`)."""
    text: str = payload["body"]
    return base64.b64decode(text) if payload.get("body_encoding") == "base64" else text.encode()


def _inline(source: Source, verified: Verified, body: bytes) -> Received | None:
    """Deliveries answered without a job: GitHub's ping, Slack's URL verification."""
    if source.scheme == "github" and verified.event == "ping":
        return Received(outcome="ping", delivery_id=verified.delivery_id, event="ping")
    if source.scheme == "slack" and verified.event == "url_verification":
        try:
            challenge = msgspec.json.decode(body, type=dict[str, Any]).get("challenge")
        except msgspec.DecodeError:
            challenge = None
        if isinstance(challenge, str):
            return Received(outcome="challenge", delivery_id=verified.delivery_id, event=verified.event,
                            challenge=challenge)  # fmt: skip
    return None


class WebhookReceiver:
    """Receives deliveries over one Redis endpoint (injectable: `redis`, and `clock` for the tolerance)."""

    def __init__(self, *, redis: RedisProvider = get_redis, clock: Clock | None = None) -> None:
        self._redis = redis
        self._clock = clock or RedisClock()

    async def receive(self, source: Source, headers: Headers, body: bytes) -> Received:
        """`headers` look names up case-insensitively (Starlette's `request.headers`)."""
        verified = verify(source, headers, body)
        digest = body_digest(source.name.encode(), verified.delivery_id.encode())[:32]
        marker, owner = keys.webhook_seen(source.name, digest), secrets.token_hex(8)
        age_ms = await self._first_delivery(source, verified, marker, owner)
        if age_ms is not None:  # a duplicate
            job = source.job_for(verified.event) if _inline(source, verified, body) is None else None
            if job is not None and age_ms < REPUBLISH_WINDOW_MS:  # recover a publish a crash lost (4.)
                await _enqueue(job, job_payload(source, verified, body), f"webhook-{digest}")
            return Received(outcome="duplicate", delivery_id=verified.delivery_id, event=verified.event)
        if (answered := _inline(source, verified, body)) is not None:
            return answered
        job = source.job_for(verified.event)
        if job is None:
            return Received(outcome="ignored", delivery_id=verified.delivery_id, event=verified.event)
        try:
            message_id = await _enqueue(job, job_payload(source, verified, body), f"webhook-{digest}")
        except Exception:
            with contextlib.suppress(RedisUnavailable):  # then the marker stays: see the module's docstring
                await FORGET.run(self._redis(), [marker], [owner])
            raise
        return Received(outcome="accepted", delivery_id=verified.delivery_id, event=verified.event, job=job,
                        message_id=message_id)  # fmt: skip

    async def _first_delivery(self, source: Source, verified: Verified, marker: str, owner: str) -> int | None:
        """None when this delivery is fresh and new (now recorded); for a duplicate, how many ms ago the
        first one was recorded."""
        now = self._clock.script_now_ms()
        ttl_ms = max(keys.WEBHOOK_SEEN_TTL_S, 2 * source.tolerance_s) * 1000
        args = ["" if now is None else now, "" if verified.timestamp_s is None else verified.timestamp_s,
                source.tolerance_s * 1000, owner, ttl_ms]  # fmt: skip
        raw = await RECEIVE.run(self._redis(), [marker], args)
        assert isinstance(raw, list)
        outcome, now_ms = str(raw[0]), int(raw[1])
        if outcome in ("past", "future"):
            assert verified.timestamp_s is not None
            skew_s = abs(now_ms // 1000 - verified.timestamp_s)
            raise BadSignature(f"the signed timestamp is {skew_s} s in the {outcome}; the source "
                               f"{source.name!r} accepts {source.tolerance_s} s", field="timestamp")  # fmt: skip
        return None if outcome == "new" else int(raw[2])


async def _enqueue(name: str, payload: dict[str, Any], dedup_id: str) -> str:
    from shared.jobs.eager import is_eager
    from shared.jobs.publish import publish_job
    from shared.jobs.registry import get_job

    job = get_job(name)
    if is_eager():  # users' own tests: run in-process, exactly as `enqueue` would
        return await job.enqueue(payload, dedup_id=dedup_id)
    return await publish_job(job.name, msgspec.json.encode(payload), job.options, dedup_id=dedup_id)
