"""Who may submit a score to a board: a route guard (`shared.http.RouteLimit`) that runs before the
body is parsed, so a refused submission costs no parsing and changes nothing.

- Servers: `Authorization: Bearer <one of the board's submit_keys>`.
- Game clients: `X-Timestamp: <Unix seconds>` and `X-Signature: sha256=<hex HMAC-SHA256 of
  "<timestamp>.<raw body>" with one of the board's signing_secrets>`, the timestamp within 5 minutes of
  this function's clock (the scheme of Stripe's and Slack's webhook signatures: the timestamp inside the
  signed text stops a captured request being replayed later; the submission id stops it within the 5 min).

Every offered value is compared with every configured one in constant time (`hmac.compare_digest`), so
neither the time taken nor the answer tells which key or secret came close. Several keys or secrets at
once allow rotation. A bad signature or timestamp is a `BadSignature` (401 without a bearer challenge).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from shared.errors import BadSignature, Unauthorized
from shared.leaderboards.boards import Board, get_board

TOLERANCE_S = 300
Now = Callable[[], float]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Signature` value for `body` sent at `timestamp` (what a game client computes)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _any_matches(offered: str, expected: list[str]) -> bool:
    matched = False
    for value in expected:  # no early exit: the time taken does not depend on which one matched
        matched |= hmac.compare_digest(offered.encode(), value.encode())
    return matched


def verify_submission(board: Board, headers: dict[str, str], body: bytes, now_s: float) -> None:
    """Raise `Unauthorized` (or `BadSignature`) unless the request carries a submit key or a fresh, valid signature."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        if board.submit_keys and _any_matches(header[7:], board.submit_keys):
            return
        raise Unauthorized("this board's submissions need one of its submit keys")
    offered, timestamp = headers.get("x-signature", ""), headers.get("x-timestamp", "")
    if not offered or not timestamp:
        raise Unauthorized("a submission needs `Authorization: Bearer <submit key>` or X-Signature and X-Timestamp")
    if not timestamp.isdigit() or len(timestamp) > 12 or abs(now_s - int(timestamp)) > TOLERANCE_S:
        raise BadSignature(
            f"X-Timestamp must be Unix seconds within {TOLERANCE_S} s of now", field="header.x-timestamp"
        )
    expected = [signature(secret, timestamp, body) for secret in board.signing_secrets]
    if not expected or not _any_matches(offered, expected):
        raise BadSignature("X-Signature does not match the body", field="header.x-signature")


@dataclass(frozen=True, slots=True)
class SignedSubmission:
    """The guard of `POST /api/leaderboards/{board}/scores`: the board must exist and the request must be
    authorized for it, before the body is parsed."""

    now: Now = time.time

    statuses = (401, 404)
    headers = ()

    async def around(self, request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
        board = get_board(str(request.path_params.get("board", "")))
        body = await request.body()  # Starlette keeps it: the handler parses these same bytes
        verify_submission(board, {k: v for k, v in request.headers.items()}, body, self.now())
        return await call()
