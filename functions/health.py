"""GET /api/health: is this deployment configured, and can it reach Redis and QStash (with latencies)?

Answers 200 when every configured dependency answers, 503 otherwise. Shows which variables are set,
never their values.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.config import configured_variables, qstash_settings
from shared.errors import ConfigurationError
from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response
from shared.redis import get_redis


class Check(msgspec.Struct, omit_defaults=True):
    ok: bool
    latency_ms: float | None = None
    error: str | None = None


class Health(msgspec.Struct):
    status: str
    variables: dict[str, bool]
    checks: dict[str, Check]


api = Api("health", title="Health")


async def _timed(probe: str) -> Check:
    started = time.perf_counter()
    try:
        if probe == "redis":
            await get_redis().ping()
        else:
            from qstash import AsyncQStash  # only health needs the QStash SDK here: keep imports light

            settings = qstash_settings()
            client = AsyncQStash(settings.token, base_url=settings.url, retry=False)
            await client.queue.list()
    except ConfigurationError as exc:
        return Check(ok=False, error=f"not configured: {exc}")
    except Exception as exc:  # any failure is the answer here; its type says enough, its text may not be safe
        return Check(ok=False, error=f"unreachable ({type(exc).__name__})")
    return Check(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


@api.get("/api/health", summary="Configuration and dependency reachability", responses={200: Health, 503: Health})
async def health(request: Request) -> Response:
    redis, qstash = await asyncio.gather(_timed("redis"), _timed("qstash"))
    checks = {"redis": redis, "qstash": qstash}
    healthy = all(check.ok for check in checks.values())
    body = Health(status="ok" if healthy else "degraded", variables=configured_variables(), checks=checks)
    return json_response(body, status=200 if healthy else 503)


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
