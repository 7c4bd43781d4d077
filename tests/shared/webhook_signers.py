"""Signatures made as each sender documents them, independently of shared/webhooks/schemes.py, for the
webhook tests: each returns the headers the sender would send with `body`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def github(secret: str, body: bytes, *, event: str = "push", delivery: str | None = None) -> dict[str, str]:
    """docs.github.com, "Validating webhook deliveries": sha256= + hex HMAC of the body."""
    return {
        "X-Hub-Signature-256": "sha256=" + _hmac(secret.encode(), body).hex(),
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


def stripe(secrets: list[str], body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """docs.stripe.com, "Verify signatures manually": t=<ts>,v1=<hex HMAC of "<ts>.<body>"> per secret."""
    t = int(time.time()) if timestamp is None else timestamp
    v1 = [f"v1={_hmac(s.encode(), f'{t}.'.encode() + body).hex()}" for s in secrets]
    v0 = "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"  # a legacy scheme: ignored
    return {"Stripe-Signature": ",".join([f"t={t}", *v1, v0]), "Content-Type": "application/json"}


def standard(secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks spec: v1,<base64 HMAC of "<id>.<ts>.<body>"> with the key after whsec_."""
    t = str(int(time.time()) if timestamp is None else timestamp)
    msg = msg_id or f"msg_{uuid.uuid4().hex}"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(_hmac(key, f"{msg}.{t}.".encode() + body)).decode()
    return {"webhook-id": msg, "webhook-timestamp": t, "webhook-signature": f"v1,{signature}",
            "Content-Type": "application/json"}  # fmt: skip


def slack(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """api.slack.com, "Verifying requests from Slack": v0= + hex HMAC of "v0:<ts>:<body>"."""
    t = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Signature": "v0=" + _hmac(secret.encode(), f"v0:{t}:".encode() + body).hex(),
            "X-Slack-Request-Timestamp": t, "Content-Type": "application/json"}  # fmt: skip


def acme(secret: str, body: bytes, *, delivery: str | None = None) -> dict[str, str]:
    """The generic scheme as the README's `acme` example configures it."""
    return {"X-Acme-Signature": "sha256=" + _hmac(secret.encode(), body).hex(),
            "X-Acme-Delivery": delivery or str(uuid.uuid4())}  # fmt: skip
