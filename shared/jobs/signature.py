"""Verifying `Upstash-Signature` the way QStash signs it (reference qstash.md §6): an HS256 JWT over the
exact URL called (`sub`) and the SHA-256 of the raw body (`body`), signed with the current signing key,
or the next one during a rotation.

Verified over the raw bytes as received, never a re-serialised body (the classic bug), and against the
public URL the message was published to, never the URL this process happens to see behind a proxy.
PyJWT checks the signature, `iss`, `exp` and `nbf`; a few seconds of leeway absorb clock skew between
QStash and the function (the official Receiver has none: its `clock_tolerance` is ignored, §6.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

import jwt

from shared.errors import BadSignature

LEEWAY_S = 5
_REQUIRED = ["iss", "sub", "exp", "nbf", "body"]


def verify_signature(signature: str | None, body: bytes, url: str, keys: Sequence[str]) -> None:
    """Raise `BadSignature` unless `signature` signs exactly `body` for `url` with one of `keys`."""
    if not signature:
        raise BadSignature("the Upstash-Signature header is missing", field="Upstash-Signature")
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    for key in keys:
        try:
            claims = jwt.decode(
                signature, key, algorithms=["HS256"], issuer="Upstash", leeway=LEEWAY_S, options={"require": _REQUIRED}
            )
        except jwt.PyJWTError:
            continue  # the next key, during a rotation
        if claims["sub"] != url:
            raise BadSignature("the signature was made for another URL", field="Upstash-Signature")
        if not hmac.compare_digest(str(claims["body"]).rstrip("="), digest):
            raise BadSignature("the signature does not match the body", field="Upstash-Signature")
        return
    raise BadSignature("the signature is not valid for the current or next signing key", field="Upstash-Signature")
