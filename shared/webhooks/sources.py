"""Webhook sources, declared in one place: `STASHKIT_WEBHOOK_SOURCES`, a JSON object of source name to
its scheme, its secrets (several during a rotation: a signature made with any of them is accepted), its
timestamp tolerance, and the job each delivery runs, by event type with a `"*"` fallback.

    {"github": {"scheme": "github", "secrets": ["s3cret"], "job": {"push": "deploys.on_push", "*": "webhooks.record"}},
     "acme":   {"scheme": "hmac", "secrets": ["..."], "header": "X-Acme-Signature", "prefix": "sha256=",
                "encoding": "hex", "id_header": "X-Acme-Delivery", "job": "webhooks.record"}}

A mistake names the variable and the source (never a secret): the function answers 500 and logs it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from shared.config import WEBHOOK_SOURCES_VAR, webhook_settings
from shared.errors import ConfigurationError

Scheme = Literal["github", "stripe", "standard", "slack", "hmac"]
Encoding = Literal["hex", "base64"]
# Stripe's default tolerance is 5 minutes (stripe-python `Webhook.DEFAULT_TOLERANCE = 300`); the
# Standard Webhooks and Slack docs use the same window.
DEFAULT_TOLERANCE_S = 300
FALLBACK_EVENT = "*"
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
HeaderName = Annotated[str, msgspec.Meta(pattern=_HEADER_NAME.pattern)]


class _SourceJson(msgspec.Struct, forbid_unknown_fields=True):
    scheme: Scheme
    secrets: Annotated[list[Secret], msgspec.Meta(min_length=1, max_length=8)]
    job: str | dict[str, str]
    tolerance_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = DEFAULT_TOLERANCE_S
    header: HeaderName | None = None  # hmac: the header carrying the signature
    prefix: Annotated[str, msgspec.Meta(max_length=32)] = ""  # hmac: text before the signature, e.g. "sha256="
    encoding: Encoding = "hex"  # hmac: how the signature's bytes are written
    id_header: HeaderName | None = None  # hmac: the delivery id (else the body's digest)
    event_header: HeaderName | None = None  # hmac: the event type (else the "*" job)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One configured sender. `keys` are the HMAC keys the secrets stand for (Standard Webhooks' are the
    base64 after `whsec_`); `__repr__` hides them."""

    name: str
    scheme: Scheme
    keys: tuple[bytes, ...]
    jobs: Mapping[str, str]  # event type (or "*") -> job name
    tolerance_s: int = DEFAULT_TOLERANCE_S
    header: str | None = None
    prefix: str = ""
    encoding: Encoding = "hex"
    id_header: str | None = None
    event_header: str | None = None

    def __repr__(self) -> str:
        return (
            f"Source(name={self.name!r}, scheme={self.scheme!r}, keys={len(self.keys)} set, jobs={dict(self.jobs)!r})"
        )

    def job_for(self, event: str | None) -> str | None:
        """The job this event runs: its own, else the `"*"` fallback, else None (acknowledged, no job)."""
        return self.jobs.get(event or FALLBACK_EVENT) or self.jobs.get(FALLBACK_EVENT)


def _key(scheme: Scheme, secret: str, where: str) -> bytes:
    if scheme != "standard":
        return secret.encode()
    # Standard Webhooks: the secret is `whsec_` + base64 of the key (standard-webhooks spec, "Signature
    # scheme"); the HMAC key is the decoded bytes.
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"{where}: a standard secret is whsec_<base64>") from None


def _source(name: str, raw: _SourceJson, registered: frozenset[str] | None) -> Source:
    where = f"source {name!r}"
    if not _SOURCE_NAME.match(name):
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"{where}: a name is 1-64 letters, digits, '_' or '-'")
    if raw.scheme == "hmac" and raw.header is None:
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"{where}: the hmac scheme needs a `header`")
    jobs = {FALLBACK_EVENT: raw.job} if isinstance(raw.job, str) else dict(raw.job)
    if not jobs:
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"{where}: `job` names no job")
    unknown = sorted(set(jobs.values()) - registered) if registered is not None else []
    if unknown:
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"{where}: no job is registered as {unknown[0]!r}")
    return Source(
        name=name,
        scheme=raw.scheme,
        keys=tuple(_key(raw.scheme, secret, where) for secret in raw.secrets),
        jobs=jobs,
        tolerance_s=raw.tolerance_s,
        header=raw.header,
        prefix=raw.prefix,
        encoding=raw.encoding,
        id_header=raw.id_header,
        event_header=raw.event_header,
    )


def parse_sources(text: str | None, registered: frozenset[str] | None = None) -> dict[str, Source]:
    """The sources `text` declares; with `registered`, every job they name must be one of those."""
    if text is None:
        return {}
    try:
        raw = msgspec.json.decode(text, type=dict[str, _SourceJson])
    except msgspec.ValidationError as exc:  # says where, never echoes the value (it may be a secret)
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, f"is not valid: {exc}") from None
    except msgspec.DecodeError:
        raise ConfigurationError(WEBHOOK_SOURCES_VAR, "is not a JSON object") from None
    return {name: _source(name, source, registered) for name, source in raw.items()}


@functools.cache
def configured_sources() -> dict[str, Source]:
    """The environment's sources, read and checked against the registered jobs once per process."""
    from shared.jobs.registry import registered_jobs

    return parse_sources(webhook_settings().sources_json, frozenset(registered_jobs()))
