"""`Upstash-Signature`: the HS256 JWT QStash puts on every delivery attempt (reference §6.1, G25).

Built by hand rather than with PyJWT: it is a dozen lines, and PyJWT warns (an error under `-W error`)
when a user-chosen key is shorter than 32 bytes, which an emulator must tolerate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

TOKEN_LIFETIME_S = 300  # exp = iat + 5 minutes (reference §6.1)
_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
_KEY_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def body_hash(body: bytes) -> str:
    """base64url(SHA-256(body)), padded as the QStash docs show it; both SDKs strip `=` before comparing."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()


def sign_delivery(key: str, url: str, body: bytes, now_s: int) -> str:
    """A JWT for one attempt to `url`: `sub` is the exact URL called, `iat` = `nbf` = now (real time)."""
    claims = {
        "iss": "Upstash",
        "sub": url,
        "exp": now_s + TOKEN_LIFETIME_S,
        "nbf": now_s,
        "iat": now_s,
        "jti": "jwt_" + secrets.token_hex(12),  # a string: PyJWT rejects a non-string jti
        "body": body_hash(body),
    }
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HEADER + b"." + payload
    signature = _b64url(hmac.new(key.encode(), signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def new_signing_key() -> str:
    """`sig_` + 28 characters: 32 bytes like the dev server's keys, the length PyJWT wants for HS256."""
    return "sig_" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(28))


@dataclass(slots=True)
class SigningKeys:
    current: str
    next: str

    def rotate(self) -> None:
        """The next key becomes current and a fresh next key is made (reference §6.4)."""
        self.current, self.next = self.next, new_signing_key()
