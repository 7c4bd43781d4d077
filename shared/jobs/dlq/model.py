"""What a dead letter is, how it is stored in its Redis hash, and the opaque list cursor."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from shared.errors import InvalidInput

# dead       recorded: its retries ran out; it can be redriven
# redriving  claimed by a redrive that is publishing it (or whose publish had an unknown outcome)
# redriven   published again as `redriven_as`; never redriven twice
Status = Literal["dead", "redriving", "redriven"]
STATUSES: tuple[str, ...] = get_args(Status)
MAX_ERROR_CHARS = 1_000
MAX_RESPONSE_BODY_CHARS = 4_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A job run whose retries ran out, as QStash's failure callback (or its DLQ) describes it."""

    message_id: str
    job: str
    body: bytes
    attempts: int
    error: str | None = None
    response_status: int | None = None
    response_body: str | None = None
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    dlq_id: str | None = None  # QStash's own DLQ id, when known
    failed_at_ms: int | None = None  # None: Redis time when recorded


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A stored dead letter: the letter (its `failed_at_ms` always set) and what became of it."""

    id: str
    status: Status
    letter: DeadLetter
    redriven_as: str | None = None  # the message id it was published again as
    redriven_at_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    entries: list[Entry]
    next_cursor: str | None  # None: no more entries match


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryFilter:
    """Which entries a list, purge or redrive covers: all of them when every field is None."""

    job: str | None = None
    since_ms: int | None = None  # failed_at >= since_ms
    until_ms: int | None = None  # failed_at < until_ms
    status: Status | None = None


def entry_id(message_id: str) -> str:
    """An entry's id, derived from its message id: one message has one entry, however often QStash
    (or a reconcile) reports it, and the id is URL-safe whatever the message id holds."""
    return "dl_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]


def letter_fields(letter: DeadLetter) -> list[str | int]:
    """The letter as hash field/value pairs (status, job and failed_at are the script's)."""
    pairs: list[tuple[str, str | int | None]] = [
        ("message_id", letter.message_id),
        ("attempts", letter.attempts),
        ("error", letter.error[:MAX_ERROR_CHARS] if letter.error else None),
        ("response_status", letter.response_status),
        ("response_body", letter.response_body[:MAX_RESPONSE_BODY_CHARS] if letter.response_body else None),
        ("headers", json.dumps(dict(letter.headers), separators=(",", ":")) if letter.headers else None),
        ("dlq_id", letter.dlq_id or None),
    ]
    try:  # the REST protocol carries text: keep a UTF-8 body as it is, anything else in base64
        pairs.append(("body", letter.body.decode()))
    except UnicodeDecodeError:
        pairs.append(("body_b64", base64.b64encode(letter.body).decode()))
    return [item for name, value in pairs if value is not None for item in (name, value)]


def entry_from_fields(id_: str, fields: Mapping[str, str]) -> Entry:
    def number(name: str) -> int | None:
        return int(float(fields[name])) if fields.get(name) else None

    body = base64.b64decode(fields["body_b64"]) if "body_b64" in fields else fields.get("body", "").encode()
    letter = DeadLetter(
        message_id=fields.get("message_id", ""),
        job=fields.get("job", ""),
        body=body,
        attempts=number("attempts") or 0,
        error=fields.get("error"),
        response_status=number("response_status"),
        response_body=fields.get("response_body"),
        headers=json.loads(fields["headers"]) if fields.get("headers") else {},
        dlq_id=fields.get("dlq_id"),
        failed_at_ms=number("failed_at"),
    )
    status = fields.get("status", "dead")
    return Entry(
        id=id_,
        status=status if status in STATUSES else "dead",  # type: ignore[arg-type]
        letter=letter,
        redriven_as=fields.get("redriven_as"),
        redriven_at_ms=number("redriven_at"),
    )


def flat_to_dict(flat: object) -> dict[str, str]:
    """An HGETALL reply as a dict (the SDK returns a flat list)."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    assert isinstance(flat, list)
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def encode_cursor(failed_at_ms: int, id_: str) -> str:
    return base64.urlsafe_b64encode(f"{failed_at_ms}:{id_}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The position a cursor stands for; a cursor this module did not make is a 422 naming it."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, _, id_ = text.partition(":")
        if id_.startswith("dl_") and score.isdigit():
            return int(score), id_
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidInput("cursor is not a cursor this API returned", field="cursor")
