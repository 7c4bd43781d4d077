"""The caching GET proxy behind functions/cache.py: an allow-list of origins, HTTP caching semantics
(RFC 9111 for a shared cache, RFC 5861 for stale-while-revalidate and stale-if-error), and
shared/cache/store.py for stampedes and invalidation.

Never an open proxy: the upstream URL is `base + "/" + path`, where the path is the request's raw path
(percent-encoding untouched), refused when it holds an encoded slash, backslash or dot, `@`, a `.` or
`..` segment or an empty one (`//host`); the URL built is then parsed again and must still have the
base's scheme, host and port, and start with the base's path. Redirects are never followed (httpx
`follow_redirects=False`): a 3xx is a 502, so no answer can lead the proxy to another host.

What is stored: only 200, 203, 204, 404 and 410 answers without `no-store`, `private`, `Set-Cookie`, or a
`Vary` on a header outside the configured set; fresh for `s-maxage`, else `max-age` (less the origin's
`Age`); `no-cache` stores nothing fresh but keeps the copy for stale-if-error. Each copy is tagged with
its path (so `paths` invalidation reaches every query-string and Vary variant) and with the origin's
`Cache-Tag` (comma-separated) or `Surrogate-Key` (space-separated) tags.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared.cache.store import Cache, Cached, Computed
from shared.config import CacheSettings
from shared.errors import InvalidInput, NotFound, OriginUnavailable
from shared.transport import LoopLocal

ORIGIN_TIMEOUT_S = 10.0
MAX_PATH_CHARS = 512
MAX_TAGS = 32
PUBLIC_PREFIX = "/api/cache/"
STORABLE_STATUSES = frozenset({200, 203, 204, 404, 410})
# What the proxy relays of an origin's answer (never Set-Cookie, hop-by-hop or encoding headers: the
# body is stored decoded).
RELAYED_HEADERS = (
    "content-type",
    "content-language",
    "content-disposition",
    "cache-control",
    "etag",
    "last-modified",
    "expires",
    "vary",
)
_SAFE_RAW_PATH = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:/%-]*$")
_UNSAFE_ESCAPES = re.compile(r"%(2[fFeE]|5[cC]|40|[01][0-9a-fA-F]|7[fF]|25)")
_DIRECTIVE = re.compile(r"\s*([A-Za-z-]+)\s*(?:=\s*\"?([^\",]*)\"?)?\s*(?:,|$)")
XCache = Literal["HIT", "STALE", "MISS"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def upstream_url(base: str, raw_path: str, query: str) -> str:
    """`base/raw_path?query`, or InvalidInput when the path could leave the origin (module docstring)."""
    if len(raw_path) > MAX_PATH_CHARS or not _SAFE_RAW_PATH.match(raw_path) or _UNSAFE_ESCAPES.search(raw_path):
        raise InvalidInput("the path holds characters or escapes a proxied path may not", field="path")
    if any(segment in ("", ".", "..") for segment in raw_path.split("/")):
        raise InvalidInput("the path may not hold empty, `.` or `..` segments", field="path")
    url = f"{base}/{raw_path}" + (f"?{query}" if query else "")
    parsed, origin = httpx.URL(url), httpx.URL(base + "/")
    same_origin = (parsed.scheme, parsed.host, parsed.port) == (origin.scheme, origin.host, origin.port)
    if not same_origin or not parsed.raw_path.startswith(origin.raw_path) or parsed.userinfo:
        raise InvalidInput("the path would leave the configured origin", field="path")
    return url


def cache_control(value: str) -> dict[str, str]:
    """Directives of a Cache-Control header, names lower-cased (RFC 9111 §5.2)."""
    return {m.group(1).lower(): (m.group(2) or "").strip() for m in _DIRECTIVE.finditer(value) if m.group(1)}


def _seconds(directives: Mapping[str, str], name: str) -> float:
    value = directives.get(name, "")
    return float(value) if value.isdigit() else 0.0


def lifetimes(response: httpx.Response, vary_headers: Sequence[str]) -> tuple[float, float, float] | None:
    """(fresh, stale-while-revalidate, stale-if-error) seconds for a storable answer, or None."""
    directives = cache_control(response.headers.get("cache-control", ""))
    varies = {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}
    if (
        response.status_code not in STORABLE_STATUSES
        or "no-store" in directives
        or "private" in directives
        or "set-cookie" in response.headers
        or not varies <= set(vary_headers)
    ):
        return None
    age = _seconds({"age": response.headers.get("age", "")}, "age")
    fresh = _seconds(directives, "s-maxage") if "s-maxage" in directives else _seconds(directives, "max-age")
    if "no-cache" in directives:
        fresh = 0.0
    swr = _seconds(directives, "stale-while-revalidate")
    sie = _seconds(directives, "stale-if-error")
    return max(0.0, fresh - age), swr, sie


def origin_tags(headers: httpx.Headers) -> tuple[str, ...]:
    tags = [t.strip() for t in headers.get("cache-tag", "").split(",")]
    tags += headers.get("surrogate-key", "").split()
    return tuple(dict.fromkeys(t for t in tags if t and len(t) <= 128))[:MAX_TAGS]


def path_tag(route: str, raw_path: str) -> str:
    return f"path:{route}/{raw_path}"


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2): `W/` prefixes are ignored; `*` matches any current ETag."""
    if not etag:
        return False
    offered = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in offered or etag.removeprefix("W/") in offered


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=ORIGIN_TIMEOUT_S, follow_redirects=False)


_clients = LoopLocal(_new_client)


class CachingProxy:
    def __init__(self, settings: CacheSettings, cache: Cache | None = None) -> None:
        self.settings = settings
        self.cache = cache or Cache("proxy")

    async def get(self, route: str, raw_path: str, query: str, request_headers: Mapping[str, str]) -> ProxyAnswer:
        base = self.settings.origins.get(route)
        if base is None:
            raise NotFound(f"no origin is configured for the route {route!r}", field="path.route")
        url = upstream_url(base, raw_path, query)
        forwarded = {h: request_headers[h] for h in self.settings.vary_headers if h in request_headers}
        variant = hashlib.sha256(f"{query}\n{sorted(forwarded.items())}".encode()).hexdigest()[:24]
        key = f"{route}/{raw_path}#{variant}"

        async def compute() -> Computed:
            return await self._from_origin(url, forwarded)

        cached = await self.cache.fetch(key, compute, ttl_s=0, tags=(path_tag(route, raw_path),))
        return _answer(cached, key, request_headers.get("if-none-match", ""))

    async def _from_origin(self, url: str, headers: Mapping[str, str]) -> Computed:
        self.cache.record("origin_calls")
        try:
            response = await _clients.get().get(url, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise OriginUnavailable(f"the origin did not answer ({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise OriginUnavailable(f"the origin answered HTTP {response.status_code}")
        if 300 <= response.status_code < 400:
            raise OriginUnavailable(f"the origin redirected (HTTP {response.status_code}); redirects are not followed")
        stored: dict[str, Any] = {
            "s": response.status_code,
            "h": [[name, response.headers[name]] for name in RELAYED_HEADERS if name in response.headers],
            "b": base64.b64encode(response.content).decode(),
            "a": int(_seconds({"age": response.headers.get("age", "")}, "age")),
        }
        storable = lifetimes(response, self.settings.vary_headers)
        fresh, swr, sie = storable or (0.0, 0.0, 0.0)
        return Computed(
            value=stored, ttl_s=fresh, stale_ttl_s=swr, stale_if_error_s=sie, tags=origin_tags(response.headers)
        )

    async def invalidate(self, keys: Sequence[str], tags: Sequence[str], paths: Sequence[str]) -> int:
        path_tags = [path_tag(*_route_and_path(p)) for p in paths]
        return await self.cache.invalidate(keys=keys, tags=[*tags, *path_tags])

    async def stats(self) -> dict[str, int]:
        counters = await self.cache.stats()
        names = ("hits", "stale", "misses", "origin_calls", "refreshes", "invalidations")
        return {name: counters.get(name, 0) for name in names}


def _route_and_path(public_path: str) -> tuple[str, str]:
    """`/api/cache/docs/intro?x=1` -> ("docs", "intro"): the query (every variant) is dropped."""
    path = public_path.split("?", 1)[0]
    route, _, rest = path.removeprefix(PUBLIC_PREFIX).partition("/")
    if not path.startswith(PUBLIC_PREFIX) or not route or not rest:
        raise InvalidInput(f"paths are public request paths such as {PUBLIC_PREFIX}<route>/<path>", field="body.paths")
    return route, rest


def _answer(cached: Cached, key: str, if_none_match: str) -> ProxyAnswer:
    stored: dict[str, Any] = cached.value
    headers = {str(name): str(value) for name, value in stored["h"]}
    x_cache: XCache = {"hit": "HIT", "stale": "STALE", "miss": "MISS"}[cached.state]  # type: ignore[assignment]
    headers |= {"age": str(int(stored["a"] + cached.age_s)), "x-cache": x_cache, "x-cache-key": key}
    if stored["s"] == 200 and if_none_match and etag_matches(if_none_match, headers.get("etag", "")):
        headers.pop("content-type", None)
        return ProxyAnswer(status=304, headers=headers, body=b"")
    return ProxyAnswer(status=int(stored["s"]), headers=headers, body=base64.b64decode(stored["b"]))
