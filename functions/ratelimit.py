"""Rate-limit decisions as a service, for callers that are not Python functions of this collection.

POST   /api/ratelimit/check               {policy, key, cost}: consume (negative cost refunds); 429 when denied
POST   /api/ratelimit/release             {policy, key, lease}: end an in-flight lease (concurrency policies)
GET    /api/ratelimit/{policy}/{key}      what is left, consuming nothing
DELETE /api/ratelimit/{policy}/{key}      forget the key's counters (admin)
GET    /api/ratelimit/analytics?policy=P  allowed/denied per minute (admin)
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response
from shared.ratelimit.http import default_limiter, headers, refusal
from shared.ratelimit.limiter import Decision

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    policy: Name
    key: Key
    cost: int = 1


class ReleaseRequest(msgspec.Struct, forbid_unknown_fields=True):
    policy: Name
    key: Key
    lease: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Target(msgspec.Struct):
    policy: Name
    key: Key


class AnalyticsQuery(msgspec.Struct):
    policy: Name
    minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 60


class LimitBody(msgspec.Struct):
    algorithm: str
    limit: int
    window_s: float
    remaining: int
    reset_ms: int


class DecisionBody(msgspec.Struct):
    allowed: bool
    policy: str
    tier: str
    remaining: int | None
    retry_after_ms: int
    limits: list[LimitBody]
    reason: str | None = None
    lease: str | None = None
    cached: bool = False
    degraded: bool = False


def _body(d: Decision) -> DecisionBody:
    limits = [LimitBody(s.limit.algorithm, s.limit.limit, s.limit.window_s, s.remaining, s.reset_ms) for s in d.limits]
    tight = d.tightest
    return DecisionBody(
        d.allowed,
        d.policy,
        d.tier,
        tight.remaining if tight else None,
        d.retry_after_ms,
        limits,
        d.reason,
        d.lease,
        d.cached,
        d.degraded,
    )


api = Api("ratelimit", title="Rate-limit decisions")


@api.post(
    "/api/ratelimit/check",
    summary="Consume from a policy for a key",
    body=CheckRequest,
    responses={200: DecisionBody, 403: None, 404: None, 429: None, 503: None},
)
async def check(request: Request, body: CheckRequest) -> Response:
    limiter = default_limiter()
    decision = await limiter.check(body.policy, body.key, body.cost)
    if not decision.allowed:
        raise refusal(decision, limiter.now_ms())
    return json_response(_body(decision), headers=headers(decision, limiter.now_ms()))


@api.post("/api/ratelimit/release", summary="End an in-flight lease", body=ReleaseRequest, responses={200: None})
async def release(request: Request, body: ReleaseRequest) -> Response:
    await default_limiter().release(body.policy, body.key, body.lease)
    return json_response({"released": True})


@api.get("/api/ratelimit/analytics", summary="Allowed and denied per minute", query=AnalyticsQuery, admin=True)
async def analytics(request: Request, query: AnalyticsQuery) -> Response:
    counts = await default_limiter().analytics(query.policy, query.minutes)
    minutes = [{"minute_ms": minute * 60_000, **c} for minute, c in sorted(counts.items())]
    return json_response({"policy": query.policy, "minutes": minutes})


@api.get(
    "/api/ratelimit/{policy}/{key:path}",
    summary="Remaining, consuming nothing",
    path_params=Target,
    responses={200: DecisionBody, 404: None, 503: None},
)
async def remaining(request: Request, path: Target) -> Response:
    limiter = default_limiter()
    decision = await limiter.peek(path.policy, path.key)
    return json_response(_body(decision), headers=headers(decision, limiter.now_ms()))


@api.delete("/api/ratelimit/{policy}/{key:path}", summary="Reset a key", path_params=Target, admin=True)
async def reset(request: Request, path: Target) -> Response:
    await default_limiter().reset(path.policy, path.key)
    return json_response({"reset": True})


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
