"""QStash's failure callback (reference qstash.md §5.5) and DLQ messages, read as dead letters.

The callback arrives once a message's retries have run out: the source message (`sourceMessageId`,
`url`, base64 `sourceBody`, `sourceHeader`), the last attempt's response (`status`, base64 `body`,
`header`), `retried`, `maxRetries`, QStash's `dlqId` and the message's `createdAt` (ms, a string in the
documented example). The job is named by the destination's path, `.../api/jobs/<name>`: the host is
not checked, so messages published before a domain change are still recognised.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from shared.errors import InvalidInput
from shared.jobs.dlq.model import MAX_RESPONSE_BODY_CHARS, DeadLetter

JOBS_PATH = re.compile(r"^/api/jobs/([A-Za-z0-9_.-]{1,64})$")
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class FailureCallback(msgspec.Struct, rename="camel"):
    """The failure callback's JSON body (fields the store does not use are accepted and ignored)."""

    source_message_id: NonEmpty
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    source_body: str = ""  # base64
    source_header: dict[str, list[str]] = {}
    status: int = 0  # 0: no HTTP response (see `error`)
    body: str = ""  # base64 of the last response's body
    retried: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 0
    dlq_id: str | None = None
    created_at: str | int | None = None  # ms
    error: str | None = None


def job_of_url(url: str) -> str | None:
    """The job a destination URL addresses (`.../api/jobs/<name>`), or None."""
    parts = urlsplit(url)
    found = JOBS_PATH.match(parts.path)
    return found.group(1) if found and not parts.query else None


def describe_failure(status: int | None, response: str | None, transport_error: str | None = None) -> str:
    """What went wrong, for people: the problem's `detail` when the jobs function answered one (the
    handler's exception), else QStash's own error, else the status."""
    if response:
        try:
            detail = json.loads(response).get("detail")
        except (ValueError, AttributeError):
            detail = None
        if isinstance(detail, str) and detail:
            return detail
    if transport_error:
        return transport_error
    return f"the job answered HTTP {status}" if status else "the job did not answer"


def created_at_ms(value: str | int | None) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def letter_from_callback(callback: FailureCallback) -> DeadLetter:
    """The dead letter a failure callback describes; a 422 naming the field when it is not a job's."""
    job = job_of_url(callback.url)
    if job is None:
        raise InvalidInput("url is not a job's destination (.../api/jobs/<name>)", field="body.url")
    response = _text(_decoded(callback.body, "body.body"))
    return DeadLetter(
        message_id=callback.source_message_id,
        job=job,
        body=_decoded(callback.source_body, "body.sourceBody"),
        attempts=callback.retried + 1,
        error=describe_failure(callback.status, response, callback.error),
        response_status=callback.status or None,
        response_body=response[:MAX_RESPONSE_BODY_CHARS] if response else None,
        headers=callback.source_header,
        dlq_id=callback.dlq_id or None,
    )


def _decoded(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{field.removeprefix('body.')} is not base64", field=field) from exc


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
