"""A route guard that admits only what QStash signed for this deployment (shared/http.py `RouteLimit`).

    @api.post("/api/dlq/callback", summary="...", body=FailureCallback, limit=SignedByQStash())

Declared on the route, it runs before the body is parsed: an unsigned request is a 401 whatever its
body, and learns nothing from validation errors. The signature is checked exactly as the jobs function
checks a delivery (shared/jobs/signature.py): over the raw body, for the public URL the message was
addressed to (`STASHKIT_PUBLIC_URL` + this path and query), with the current or the next signing key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from shared.jobs.publish import settings
from shared.jobs.signature import verify_signature


def signed_url(request: Request) -> str:
    """The URL QStash was asked to call (what it signed): the public base URL, this path and query."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return settings().require_public_url() + request.url.path + (f"?{query}" if query else "")


class SignedByQStash:
    statuses: tuple[int, ...] = (401,)
    headers: tuple[str, ...] = ()

    async def around(self, request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
        body = await request.body()  # Starlette keeps it: the route's body parsing reads the same bytes
        keys = settings().require_signing_keys()
        verify_signature(request.headers.get("upstash-signature"), body, signed_url(request), keys)
        return await call()
