"""A caching GET proxy in front of an allow-list of origins (STASHKIT_CACHE_ORIGINS).

GET  /api/cache/{route}/{path...}   base + "/" + path (+ the query string), cached as the origin's
                                    Cache-Control allows; X-Cache: HIT | STALE | MISS, Age, X-Cache-Key
POST /api/cache/invalidate          {"keys": [...], "tags": [...], "paths": [...]} (admin)
GET  /api/cache/stats               hits, stale, misses, origin calls, refreshes, invalidations (admin)

shared/cache/proxy.py says what can never reach another host and what is stored for how long.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.cache.proxy import PUBLIC_PREFIX, CachingProxy
from shared.config import cache_settings
from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response

Item = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Items = Annotated[list[Item], msgspec.Meta(max_length=100)]


class Proxied(msgspec.Struct):
    route: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class Invalidation(msgspec.Struct, forbid_unknown_fields=True):
    keys: Items = msgspec.field(default_factory=list)
    tags: Items = msgspec.field(default_factory=list)
    paths: Items = msgspec.field(default_factory=list)


class Invalidated(msgspec.Struct):
    invalidated: int


class Stats(msgspec.Struct):
    hits: int
    stale: int
    misses: int
    origin_calls: int
    refreshes: int
    invalidations: int


_proxy: CachingProxy | None = None


def proxy() -> CachingProxy:
    global _proxy
    if _proxy is None:  # settings read once per process, on the first request (inside its catch site)
        _proxy = CachingProxy(cache_settings())
    return _proxy


# The largest valid invalidation (3 lists of 100 items of 256 characters) must always fit.
api = Api("cache", title="Caching proxy", min_body_bytes=256 * 1024)


@api.post(
    "/api/cache/invalidate",
    summary="Forget cached keys, tags and paths (every variant)",
    body=Invalidation,
    responses={200: Invalidated, 422: None},
    admin=True,
)
async def invalidate(request: Request, body: Invalidation) -> Invalidated:
    return Invalidated(await proxy().invalidate(body.keys, body.tags, body.paths))


@api.get("/api/cache/stats", summary="Hits, stale answers, misses, origin calls", responses={200: Stats}, admin=True)
async def stats(request: Request) -> Response:
    return json_response(await proxy().stats())


@api.get(
    "/api/cache/{route}/{path:path}",
    summary="An origin's answer, cached as its Cache-Control allows",
    path_params=Proxied,
    responses={200: None, 304: None, 404: None, 422: None, 502: None},
)
async def proxied(request: Request, path: Proxied) -> Response:
    # The raw path (percent-encoding untouched), so `%2F` never turns into a separator upstream. Mangum
    # gives none (Lambda): the decoded path is encoded again, and whatever it decoded to is checked alike.
    raw = request.scope.get("raw_path")
    full = raw.decode("latin-1") if raw else quote(request.scope["path"], safe="/:!$&'()*+,;=-._~")
    rest = full.removeprefix(f"{PUBLIC_PREFIX}{path.route}/")
    query = request.scope.get("query_string", b"").decode("latin-1")
    answer = await proxy().get(path.route, rest, query, request.headers)
    return Response(answer.body, answer.status, answer.headers)


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
