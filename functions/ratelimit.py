"""Rate-limit decisions as a service, for callers that are not Python functions of this collection.

POST   /api/ratelimit/check               {policy, key, cost}: consume (negative cost refunds); 429 when denied
POST   /api/ratelimit/release             {policy, key, lease}: end an in-flight lease (concurrency policies)
GET    /api/ratelimit/{policy}/{key}      what the next check would get, consuming nothing
DELETE /api/ratelimit/{policy}/{key}      forget the key's counters (admin)
GET    /api/ratelimit/analytics?policy=P  allowed/denied per minute (admin)

Closed by default: check, release and peek need `Authorization: Bearer <STASHKIT_RATELIMIT_TOKEN>` (else
the admin token), so nobody can spend another key's budget, refund their own, or read another key's
state. The one anonymous use: `check` of a policy declared `"public": true`, keyed by the caller's own
address (never a key the caller chooses), at a positive cost.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import InvalidInput, Unauthorized
from shared.http import TEXT_MIME_TYPES, Api, client_ip, create_app, json_response
from shared.ratelimit.http import decision_headers, default_limiter, is_service_caller, refusal
from shared.ratelimit.limiter import Decision, Reason
from shared.ratelimit.policy import Algorithm

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    policy: Name
    key: Key | None = None  # required with the service token; anonymous callers are keyed by address
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
    algorithm: Algorithm
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
    reason: Reason | None = None
    lease: str | None = None
    cached: bool = False
    degraded: bool = False


def _body(d: Decision) -> DecisionBody:
    limits = [LimitBody(s.limit.algorithm, s.limit.limit, s.limit.window_s, s.remaining, s.reset_ms) for s in d.limits]
    tight = d.tightest
    return DecisionBody(
        allowed=d.allowed,
        policy=d.policy,
        tier=d.tier,
        remaining=tight.remaining if tight else None,
        retry_after_ms=d.retry_after_ms,
        limits=limits,
        reason=d.reason,
        lease=d.lease,
        cached=d.cached,
        degraded=d.degraded,
    )


def _require_service(request: Request) -> None:
    if not is_service_caller(request):
        raise Unauthorized("this route needs `Authorization: Bearer <STASHKIT_RATELIMIT_TOKEN>`")


def _checked_key(request: Request, body: CheckRequest) -> str:
    """The key a check may consume: any, for the service; the caller's own address, for anyone else."""
    if is_service_caller(request):
        if body.key is None:
            raise InvalidInput("key is required", field="body.key")
        return body.key
    policy = default_limiter().policies.get(body.policy)
    if policy is None or not policy.public:  # anonymous callers learn nothing about private policies
        raise Unauthorized("this policy needs `Authorization: Bearer <STASHKIT_RATELIMIT_TOKEN>`")
    if body.key is not None:
        raise Unauthorized("only the service token may choose the key; leave it out", field="body.key")
    if body.cost < 1:
        raise Unauthorized("only the service token may refund (a cost below 1)", field="body.cost")
    return f"ip:{client_ip(request)}"


api = Api("ratelimit", title="Rate-limit decisions")


@api.post(
    "/api/ratelimit/check",
    summary="Consume from a policy for a key",
    body=CheckRequest,
    responses={200: DecisionBody, 401: None, 403: None, 404: None, 429: None, 503: None},
)
async def check(request: Request, body: CheckRequest) -> Response:
    key = _checked_key(request, body)
    decision = await default_limiter().check(body.policy, key, body.cost)
    if not decision.allowed:
        raise refusal(decision)
    return json_response(_body(decision), headers=decision_headers(decision))


@api.post(
    "/api/ratelimit/release", summary="End an in-flight lease", body=ReleaseRequest, responses={200: None, 401: None}
)
async def release(request: Request, body: ReleaseRequest) -> Response:
    _require_service(request)
    await default_limiter().release(body.policy, body.key, body.lease)
    return json_response({"released": True})


@api.get("/api/ratelimit/analytics", summary="Allowed and denied per minute", query=AnalyticsQuery, admin=True)
async def analytics(request: Request, query: AnalyticsQuery) -> Response:
    counts = await default_limiter().analytics(query.policy, query.minutes)
    minutes = [{"minute_ms": minute * 60_000, **c} for minute, c in sorted(counts.items())]
    return json_response({"policy": query.policy, "minutes": minutes})


@api.get(
    "/api/ratelimit/{policy}/{key:path}",
    summary="What the next check would get, consuming nothing",
    path_params=Target,
    responses={200: DecisionBody, 401: None, 404: None, 503: None},
)
async def remaining(request: Request, path: Target) -> Response:
    _require_service(request)
    decision = await default_limiter().peek(path.policy, path.key)
    return json_response(_body(decision), headers=decision_headers(decision))


@api.delete("/api/ratelimit/{policy}/{key:path}", summary="Reset a key", path_params=Target, admin=True)
async def reset(request: Request, path: Target) -> Response:
    await default_limiter().reset(path.policy, path.key)
    return json_response({"reset": True})


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
