"""Rate limits at the HTTP edge: the IETF RateLimit headers, 429 problem details, and a route guard for
any function's handlers, declared on the route itself so no decorator order can drop it:

    @api.post("/api/things", summary="...", body=Thing, limit=RateLimit("api", key=by_header("x-api-key")))
    async def create(request: Request, body: Thing) -> Response: ...

Headers follow draft-ietf-httpapi-ratelimit-headers (the widely deployed `RateLimit-Limit`,
`-Remaining`, `-Reset` fields plus `RateLimit-Policy`), and `Retry-After` (RFC 9110 §10.2.3) on 429.
Every time in them derives from the decision's own time (`Decision.now_ms`, Redis time).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from shared.config import ratelimit_settings
from shared.errors import Forbidden, RateLimited, RedisUnavailable
from shared.http import bearer_matches, client_ip
from shared.metrics import current_request
from shared.ratelimit.limiter import Decision, RateLimiter
from shared.ratelimit.policy import load_policies

KeyFunc = Callable[[Request], str]
HEADER_NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")

log = logging.getLogger("stashkit.ratelimit")


@functools.cache
def default_limiter() -> RateLimiter:
    """The process's limiter (and its block cache), built from the environment on first use."""
    return RateLimiter(load_policies())


@functools.cache
def _service_token() -> str | None:
    return ratelimit_settings().service_token


def is_service_caller(request: Request) -> bool:
    """Whether the request carries the rate-limit service token (STASHKIT_RATELIMIT_TOKEN, else the
    admin token), compared in constant time."""
    return bearer_matches(request, _service_token())


def decision_headers(decision: Decision) -> dict[str, str]:
    tightest = decision.tightest
    out: dict[str, str] = {}
    if tightest is not None:
        out["RateLimit-Limit"] = str(tightest.limit.limit)
        out["RateLimit-Remaining"] = str(max(0, tightest.remaining))
        out["RateLimit-Reset"] = str(max(0, math.ceil((tightest.reset_ms - decision.now_ms) / 1000)))
        out["RateLimit-Policy"] = ", ".join(state.limit.header() for state in decision.limits)
    if not decision.allowed and decision.retry_after_ms:
        out["Retry-After"] = str(max(1, math.ceil(decision.retry_after_ms / 1000)))
    return out


def refusal(decision: Decision) -> RateLimited | Forbidden:
    if decision.reason == "deny":
        return Forbidden(f"this key may not use the {decision.policy!r} policy", field="key")
    what = "requests in flight" if decision.reason == "concurrency" else "requests"
    wait = math.ceil(decision.retry_after_ms / 1000)
    return RateLimited(f"too many {what} for this key under {decision.policy!r}; retry in {wait} s",
                       headers=decision_headers(decision))  # fmt: skip


def by_ip(request: Request) -> str:
    """The caller's address, as the platform vouches for it (`shared.http.client_ip`)."""
    return client_ip(request)


def by_header(name: str) -> KeyFunc:
    def key(request: Request) -> str:
        return request.headers.get(name, "") or "anonymous"

    return key


def by_route(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def combine(*parts: KeyFunc) -> KeyFunc:
    """A key made of several parts, e.g. `combine(by_header("x-api-key"), by_route)`."""
    return lambda request: "|".join(part(request) for part in parts)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A route's rate limit (`shared.http.RouteLimit`): check `policy` for `key(request)` before the
    handler runs, add the RateLimit headers to its response, and release the in-flight lease when it
    ends (concurrency policies)."""

    policy: str
    key: KeyFunc = by_ip
    cost: int = 1
    limiter: Callable[[], RateLimiter] = default_limiter

    statuses = (403, 429, 503)  # what it answers instead of the handler (503: a fail_closed outage)
    headers = HEADER_NAMES

    async def around(self, request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
        limiter = self.limiter()
        identifier = self.key(request)
        decision = await limiter.check(self.policy, identifier, self.cost)
        if not decision.allowed:
            raise refusal(decision)
        try:
            response = await call()
        finally:
            if decision.lease is not None:
                await _release(limiter, self.policy, identifier, decision.lease)
        response.headers.update(decision_headers(decision))
        return response


async def _release(limiter: RateLimiter, policy: str, identifier: str, lease: str) -> None:
    """Release a lease after the handler ran; if Redis is down the lease expires by itself (its TTL),
    which must not turn a finished request into an error."""
    try:
        await limiter.release(policy, identifier, lease)
    except RedisUnavailable as exc:
        request = current_request()
        line = {"event": "ratelimit.lease_kept", "policy": policy, "error": str(exc),
                "request_id": request.request_id if request else None}  # fmt: skip
        log.warning(json.dumps(line))
