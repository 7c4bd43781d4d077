"""Each sender's signature scheme, checked over the exact bytes received, before anything parses them.

    github    X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>; X-GitHub-Delivery, X-GitHub-Event
              (docs.github.com, "Validating webhook deliveries"). No timestamp: the delivery id guards replays.
    stripe    Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=...]; event id and
              type in the body (docs.stripe.com, "Verify webhook signatures manually").
    standard  webhook-id, webhook-timestamp, webhook-signature: "v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>"
              space-separated; key = base64 after `whsec_` (standardwebhooks.com spec; Svix).
    slack     X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>, X-Slack-Request-Timestamp
              (api.slack.com, "Verifying requests from Slack"); event id and type in the body.
    hmac      <header>: <prefix><hex or base64 HMAC-SHA256(secret, body)>; optional id and event headers.

Every candidate signature is compared with every key by `hmac.compare_digest` (constant time), so a
rotation accepts the old and the new secret. The body is parsed (for an id or a type) only once its
signature holds. The timestamp's freshness is decided with the replay check, on Redis's clock
(shared/webhooks/receiver.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from shared.errors import BadSignature
from shared.webhooks.sources import Source

Headers = Mapping[str, str]  # Starlette's headers: case-insensitive lookups

# What a job needs to know of the request besides the body, per scheme (never a signature).
KEPT_HEADERS = {
    "github": ("x-github-event", "x-github-delivery", "x-github-hook-id", "x-github-hook-installation-target-id",
               "x-github-hook-installation-target-type", "user-agent", "content-type"),
    "stripe": ("user-agent", "content-type"),
    "standard": ("webhook-id", "webhook-timestamp", "content-type"),
    "slack": ("x-slack-request-timestamp", "x-slack-retry-num", "x-slack-retry-reason", "content-type"),
    "hmac": ("content-type", "user-agent"),
}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    """A delivery whose signature holds: its id (for replays), event type and signed timestamp."""

    delivery_id: str
    event: str | None
    timestamp_s: int | None  # None: the scheme signs no timestamp (github, hmac)
    headers: dict[str, str]


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _matches(keys: Iterable[bytes], message: bytes, candidates: list[bytes]) -> bool:
    expected = [_mac(key, message) for key in keys]
    # Every pair compared, no early exit: the time taken does not say which secret or candidate matched.
    results = [hmac.compare_digest(e, c) for e in expected for c in candidates]
    return any(results)


def _require(headers: Headers, name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise BadSignature(f"the {name} header is missing", field=f"header.{name}")
    return value


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""  # matches nothing


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def _timestamp(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise BadSignature(f"the {name} timestamp is not a Unix time in seconds", field=f"header.{name}")
    return int(text)


def _json_fields(body: bytes) -> dict[str, Any]:
    """The body's top-level object (after the signature holds), or {} if it is not one."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def body_digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _refuse(source: Source) -> BadSignature:
    # Says which source's secrets were tried, never anything about them.
    return BadSignature(f"the signature does not match any secret of the source {source.name!r}", field="signature")


def _github(source: Source, headers: Headers, body: bytes) -> Verified:
    signature = _require(headers, "x-hub-signature-256")
    if not _matches(source.keys, body, [_hex(signature.removeprefix("sha256="))]):
        raise _refuse(source)
    delivery = headers.get("x-github-delivery") or body_digest(body)
    return Verified(delivery_id=delivery, event=headers.get("x-github-event"), timestamp_s=None, headers={})


def _stripe(source: Source, headers: Headers, body: bytes) -> Verified:
    pairs = [item.partition("=") for item in _require(headers, "stripe-signature").split(",")]
    stamps = [value for name, _, value in pairs if name.strip() == "t"]
    if len(stamps) != 1:
        raise BadSignature("the Stripe-Signature header has no single t= timestamp", field="header.stripe-signature")
    timestamp = _timestamp(stamps[0].strip(), "Stripe-Signature t=")
    candidates = [_hex(value.strip()) for name, _, value in pairs if name.strip() == "v1"]
    if not _matches(source.keys, stamps[0].strip().encode() + b"." + body, candidates):
        raise _refuse(source)
    fields = _json_fields(body)
    delivery = _text(fields.get("id")) or body_digest(body)
    return Verified(delivery_id=delivery, event=_text(fields.get("type")), timestamp_s=timestamp, headers={})


def _standard(source: Source, headers: Headers, body: bytes) -> Verified:
    delivery = _require(headers, "webhook-id")
    stamp = _require(headers, "webhook-timestamp")
    timestamp = _timestamp(stamp, "webhook-timestamp")
    signatures = _require(headers, "webhook-signature").split()
    candidates = [_b64(sig[3:]) for sig in signatures if sig.startswith("v1,")]
    if not _matches(source.keys, f"{delivery}.{stamp}.".encode() + body, candidates):
        raise _refuse(source)
    event = _text(_json_fields(body).get("type"))
    return Verified(delivery_id=delivery, event=event, timestamp_s=timestamp, headers={})


def _slack(source: Source, headers: Headers, body: bytes) -> Verified:
    signature = _require(headers, "x-slack-signature")
    stamp = _require(headers, "x-slack-request-timestamp")
    timestamp = _timestamp(stamp, "X-Slack-Request-Timestamp")
    if not _matches(source.keys, f"v0:{stamp}:".encode() + body, [_hex(signature.removeprefix("v0="))]):
        raise _refuse(source)
    fields = _json_fields(body)
    inner = fields.get("event")
    event = _text(inner.get("type")) if isinstance(inner, dict) else None
    # Slack's retries of one event keep its event_id; other payloads are identified by what was signed.
    delivery = _text(fields.get("event_id")) or body_digest(stamp.encode(), body)
    return Verified(delivery_id=delivery, event=event or _text(fields.get("type")), timestamp_s=timestamp, headers={})


def _hmac(source: Source, headers: Headers, body: bytes) -> Verified:
    assert source.header is not None  # sources.py requires it for this scheme
    signature = _require(headers, source.header.lower()).removeprefix(source.prefix)
    decoded = _hex(signature) if source.encoding == "hex" else _b64(signature)
    if not _matches(source.keys, body, [decoded]):
        raise _refuse(source)
    delivery = (headers.get(source.id_header) if source.id_header else None) or body_digest(body)
    event = headers.get(source.event_header) if source.event_header else None
    return Verified(delivery_id=delivery, event=event, timestamp_s=None, headers={})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


_VERIFIERS: dict[str, Callable[[Source, Headers, bytes], Verified]] = {
    "github": _github,
    "stripe": _stripe,
    "standard": _standard,
    "slack": _slack,
    "hmac": _hmac,
}


def verify(source: Source, headers: Headers, body: bytes) -> Verified:
    """Check the signature of `body` as `source`'s scheme defines it; BadSignature if it does not hold."""
    verified = _VERIFIERS[source.scheme](source, headers, body)
    kept = KEPT_HEADERS[source.scheme] + tuple(h.lower() for h in (source.id_header, source.event_header) if h)
    return Verified(
        delivery_id=verified.delivery_id[:256],
        event=verified.event[:128] if verified.event else None,
        timestamp_s=verified.timestamp_s,
        headers={name: headers[name] for name in kept if name in headers},
    )
