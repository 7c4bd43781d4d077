"""Rate limits at the HTTP edge: the IETF RateLimit headers, 429 problem details, and a decorator for
any function's handlers.

    @api.post("/api/things", summary="...", body=Thing)
    @rate_limit("api", key=by_header("x-api-key"))
    async def create(request: Request, body: Thing) -> Response: ...

Headers follow draft-ietf-httpapi-ratelimit-headers (the widely deployed `RateLimit-Limit`,
`-Remaining`, `-Reset` fields plus `RateLimit-Policy`), and `Retry-After` (RFC 9110 §10.2.3) on 429.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shared.errors import Forbidden, RateLimited
from shared.http import json_response
from shared.ratelimit.limiter import Decision, RateLimiter
from shared.ratelimit.policy import load_policies

KeyFunc = Callable[[Request], str]
_limiter: list[RateLimiter] = []


def default_limiter() -> RateLimiter:
    """The process's limiter (and its block cache), built from the environment on first use."""
    if not _limiter:
        _limiter.append(RateLimiter(load_policies()))
    return _limiter[0]


def headers(decision: Decision, now_ms: int) -> dict[str, str]:
    tightest = decision.tightest
    out: dict[str, str] = {}
    if tightest is not None:
        out["RateLimit-Limit"] = str(tightest.limit.limit)
        out["RateLimit-Remaining"] = str(max(0, tightest.remaining))
        out["RateLimit-Reset"] = str(max(0, math.ceil((tightest.reset_ms - now_ms) / 1000)))
        out["RateLimit-Policy"] = ", ".join(state.limit.header() for state in decision.limits)
    if not decision.allowed and decision.retry_after_ms:
        out["Retry-After"] = str(max(1, math.ceil(decision.retry_after_ms / 1000)))
    return out


def refusal(decision: Decision, now_ms: int) -> RateLimited | Forbidden:
    if decision.reason == "deny":
        return Forbidden(f"this key may not use the {decision.policy!r} policy", field="key")
    what = "requests in flight" if decision.reason == "concurrency" else "requests"
    wait = math.ceil(decision.retry_after_ms / 1000)
    return RateLimited(f"too many {what} for this key under {decision.policy!r}; retry in {wait} s",
                       headers=headers(decision, now_ms))  # fmt: skip


def by_ip(request: Request) -> str:
    """The caller's address: the first X-Forwarded-For hop (set by Vercel and API Gateway), else the peer."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    return forwarded or (request.client.host if request.client else "unknown")


def by_header(name: str) -> KeyFunc:
    def key(request: Request) -> str:
        return request.headers.get(name, "") or "anonymous"

    return key


def by_route(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def combine(*parts: KeyFunc) -> KeyFunc:
    """A key made of several parts, e.g. `combine(by_header("x-api-key"), by_route)`."""
    return lambda request: "|".join(part(request) for part in parts)


def rate_limit(policy: str, key: KeyFunc = by_ip, cost: int = 1,
               limiter: Callable[[], RateLimiter] = default_limiter) -> Callable[[Any], Any]:  # fmt: skip
    """Check `policy` for `key(request)` before the handler runs; add the RateLimit headers to its
    response; release the in-flight lease when it ends (concurrency policies)."""

    def decorate(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(handler)
        async def limited(request: Request, **inputs: Any) -> Any:
            rl = limiter()
            identifier = key(request)
            decision = await rl.check(policy, identifier, cost)
            now_ms = rl.now_ms()
            if not decision.allowed:
                raise refusal(decision, now_ms)
            try:
                result = await handler(request, **inputs)
            finally:
                if decision.lease is not None:
                    await rl.release(policy, identifier, decision.lease)
            response = result if isinstance(result, Response) else json_response(result)
            response.headers.update(headers(decision, now_ms))
            return response

        return limited

    return decorate
