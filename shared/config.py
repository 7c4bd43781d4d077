"""The environment, read in one place and turned into frozen settings.

Every variable the library reads is named here once. Nothing is read at import time: functions call
these when they first need a client, so a misconfigured deployment fails with a message naming the
variable, not with a KeyError deep inside an SDK.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

# Upstash's names first; Vercel's KV integration sets the same values under its own names.
REDIS_URL_VARS = ("UPSTASH_REDIS_REST_URL", "KV_REST_API_URL")
REDIS_TOKEN_VARS = ("UPSTASH_REDIS_REST_TOKEN", "KV_REST_API_TOKEN")
# The database's read-only REST token (Upstash console "Readonly Token"; Vercel's KV integration).
REDIS_READONLY_TOKEN_VARS = ("UPSTASH_REDIS_REST_READONLY_TOKEN", "KV_REST_API_READ_ONLY_TOKEN")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    rest_url: str
    rest_token: str

    def __repr__(self) -> str:  # never print the token
        return f"RedisSettings(rest_url={self.rest_url!r}, rest_token='***')"


def _rest_url(env: Mapping[str, str]) -> tuple[int, str]:
    """Which pair of names is configured (0: Upstash's, 1: Vercel's) and its checked URL."""
    for source, url_var in enumerate(REDIS_URL_VARS):
        url = env.get(url_var, "").strip()
        if not url:
            continue
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigurationError(url_var, "must be an http(s) URL such as https://xxx.upstash.io")
        return source, url.rstrip("/")
    raise ConfigurationError(REDIS_URL_VARS[0], f"is not set (nor Vercel's {REDIS_URL_VARS[1]})")


def _rest_settings(env: Mapping[str, str], token_vars: tuple[str, str], kind: str) -> RedisSettings:
    # URL and token are taken as a pair from the same source, so a half-configured Upstash pair never
    # silently mixes with a KV token.
    source, url = _rest_url(env)
    token_var = token_vars[source]
    token = env.get(token_var, "").strip()
    if not token:
        raise ConfigurationError(token_var, f"is not set ({kind}it goes with {REDIS_URL_VARS[source]})")
    return RedisSettings(url, token)


def redis_settings(environ: Mapping[str, str] | None = None) -> RedisSettings:
    """The Upstash Redis REST endpoint, from `UPSTASH_REDIS_REST_*`, else Vercel's `KV_REST_API_*`."""
    return _rest_settings(os.environ if environ is None else environ, REDIS_TOKEN_VARS, "")


def readonly_redis_settings(environ: Mapping[str, str] | None = None) -> RedisSettings:
    """The same endpoint with the database's read-only token (`UPSTASH_REDIS_REST_READONLY_TOKEN`, else
    Vercel's `KV_REST_API_READ_ONLY_TOKEN`), for code that must never write: every write it sends is
    refused with `NOPERM`."""
    return _rest_settings(
        os.environ if environ is None else environ, REDIS_READONLY_TOKEN_VARS, "the read-only token; "
    )


QSTASH_URL_VAR = "QSTASH_URL"
QSTASH_TOKEN_VAR = "QSTASH_TOKEN"
QSTASH_CURRENT_KEY_VAR = "QSTASH_CURRENT_SIGNING_KEY"
QSTASH_NEXT_KEY_VAR = "QSTASH_NEXT_SIGNING_KEY"
QSTASH_DEFAULT_URL = "https://qstash.upstash.io"
ADMIN_TOKEN_VAR = "STASHKIT_ADMIN_TOKEN"
MAX_BODY_VAR = "STASHKIT_MAX_BODY_BYTES"
REDIS_TIMEOUT_VAR = "STASHKIT_REDIS_TIMEOUT_MS"
RATELIMIT_POLICIES_VAR = "STASHKIT_RATELIMIT_POLICIES"
RATELIMIT_TOKEN_VAR = "STASHKIT_RATELIMIT_TOKEN"
# Set to "1" in every Vercel deployment (a System Environment Variable, exposed by default): there,
# and only there, the edge overwrites X-Forwarded-For with the caller's address (README "Rate limiting").
VERCEL_VAR = "VERCEL"
PUBLIC_URL_VAR = "STASHKIT_PUBLIC_URL"
JOB_MODULES_VAR = "STASHKIT_JOB_MODULES"
JOBS_EAGER_VAR = "STASHKIT_JOBS_EAGER"
ALERT_WEBHOOK_VAR = "STASHKIT_ALERT_WEBHOOK_URL"
DLQ_RETENTION_VAR = "STASHKIT_DLQ_RETENTION_DAYS"
WEBHOOK_SOURCES_VAR = "STASHKIT_WEBHOOK_SOURCES"
CACHE_ORIGINS_VAR = "STASHKIT_CACHE_ORIGINS"
CACHE_VARY_VAR = "STASHKIT_CACHE_VARY_HEADERS"
LEADERBOARDS_VAR = "STASHKIT_LEADERBOARDS"

# Every variable the library reads, for the health check (names only, never values).
ALL_VARIABLES = (
    *REDIS_URL_VARS, *REDIS_TOKEN_VARS, *REDIS_READONLY_TOKEN_VARS, QSTASH_URL_VAR, QSTASH_TOKEN_VAR,
    QSTASH_CURRENT_KEY_VAR, QSTASH_NEXT_KEY_VAR, ADMIN_TOKEN_VAR, MAX_BODY_VAR, REDIS_TIMEOUT_VAR,
    RATELIMIT_POLICIES_VAR, RATELIMIT_TOKEN_VAR, PUBLIC_URL_VAR, JOB_MODULES_VAR, JOBS_EAGER_VAR, ALERT_WEBHOOK_VAR,
    DLQ_RETENTION_VAR,
    WEBHOOK_SOURCES_VAR,
    CACHE_ORIGINS_VAR, CACHE_VARY_VAR,
    LEADERBOARDS_VAR,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class QStashSettings:
    url: str
    token: str

    def __repr__(self) -> str:
        return f"QStashSettings(url={self.url!r}, token='***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    max_body_bytes: int = 64 * 1024
    redis_timeout_s: float = 3.0
    admin_token: str | None = None
    on_vercel: bool = False  # the caller's address is X-Forwarded-For (Vercel's edge sets it)

    def __repr__(self) -> str:
        admin = "'***'" if self.admin_token else None
        return (
            f"HttpSettings(max_body_bytes={self.max_body_bytes}, redis_timeout_s={self.redis_timeout_s}, "
            f"admin_token={admin}, on_vercel={self.on_vercel})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSettings:
    policies_json: str | None = None  # None: the default policies
    service_token: str | None = None  # STASHKIT_RATELIMIT_TOKEN, else the admin token

    def __repr__(self) -> str:
        token = "'***'" if self.service_token else None
        return f"RateLimitSettings(policies_json={self.policies_json!r}, service_token={token})"


def _positive_int(env: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) <= maximum:
        raise ConfigurationError(name, f"must be a whole number between 1 and {maximum}, got {raw!r}")
    return int(raw)


def http_settings(environ: Mapping[str, str] | None = None) -> HttpSettings:
    env = os.environ if environ is None else environ
    return HttpSettings(
        max_body_bytes=_positive_int(env, MAX_BODY_VAR, 64 * 1024, 6 * 1024 * 1024),  # Lambda's payload cap is 6 MB
        redis_timeout_s=_positive_int(env, REDIS_TIMEOUT_VAR, 3000, 60_000) / 1000,
        admin_token=env.get(ADMIN_TOKEN_VAR, "").strip() or None,
        on_vercel=env.get(VERCEL_VAR, "").strip() == "1",
    )


def qstash_settings(environ: Mapping[str, str] | None = None) -> QStashSettings:
    """QStash's endpoint and token; `QSTASH_URL` defaults to Upstash's (the local emulator sets it)."""
    env = os.environ if environ is None else environ
    url = env.get(QSTASH_URL_VAR, "").strip() or QSTASH_DEFAULT_URL
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigurationError(QSTASH_URL_VAR, "must be an http(s) URL such as https://qstash.upstash.io")
    token = env.get(QSTASH_TOKEN_VAR, "").strip()
    if not token:
        raise ConfigurationError(QSTASH_TOKEN_VAR, "is not set")
    return QStashSettings(url.rstrip("/"), token)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsSettings:
    public_url: str | None = None  # what QStash calls: required to enqueue and to verify deliveries
    modules: tuple[str, ...] = ()  # the users' job modules (the built-in ones are always loaded)
    eager: bool = False  # run enqueued jobs in-process (users' own tests)
    signing_keys: tuple[str, ...] = ()  # QStash's current and next signing keys, those that are set
    alert_webhook_url: str | None = None  # where the DLQ digest is posted

    def __repr__(self) -> str:
        return (
            f"JobsSettings(public_url={self.public_url!r}, modules={self.modules!r}, eager={self.eager}, "
            f"signing_keys={len(self.signing_keys)} set, alert_webhook_url={'***' if self.alert_webhook_url else None})"
        )

    def require_public_url(self) -> str:
        if self.public_url is None:
            raise ConfigurationError(
                PUBLIC_URL_VAR, "is not set (the deployment's public base URL, which QStash calls)"
            )
        return self.public_url

    def require_signing_keys(self) -> tuple[str, ...]:
        if not self.signing_keys:
            raise ConfigurationError(QSTASH_CURRENT_KEY_VAR, "is not set (deliveries cannot be verified without it)")
        return self.signing_keys


def _optional_url(env: Mapping[str, str], name: str) -> str | None:
    url = env.get(name, "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigurationError(name, "must be an http(s) URL such as https://myapp.vercel.app")
    return url.rstrip("/")


def jobs_settings(environ: Mapping[str, str] | None = None) -> JobsSettings:
    env = os.environ if environ is None else environ
    modules = tuple(m.strip() for m in env.get(JOB_MODULES_VAR, "").split(",") if m.strip())
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ConfigurationError(JOB_MODULES_VAR, f"must list import paths separated by commas, got {module!r}")
    eager = env.get(JOBS_EAGER_VAR, "").strip().lower()
    if eager not in ("", "0", "1", "true", "false"):
        raise ConfigurationError(JOBS_EAGER_VAR, f"must be 1 or 0, got {eager!r}")
    keys = tuple(key for var in (QSTASH_CURRENT_KEY_VAR, QSTASH_NEXT_KEY_VAR) if (key := env.get(var, "").strip()))
    return JobsSettings(
        public_url=_optional_url(env, PUBLIC_URL_VAR),
        modules=modules,
        eager=eager in ("1", "true"),
        signing_keys=keys,
        alert_webhook_url=_optional_url(env, ALERT_WEBHOOK_VAR),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DlqSettings:
    retention_days: int = 30  # how long a dead letter is kept after it failed (shared/jobs/dlq)

    @property
    def retention_ms(self) -> int:
        return self.retention_days * 86_400_000


def dlq_settings(environ: Mapping[str, str] | None = None) -> DlqSettings:
    env = os.environ if environ is None else environ
    return DlqSettings(retention_days=_positive_int(env, DLQ_RETENTION_VAR, 30, 3650))


def configured_variables(environ: Mapping[str, str] | None = None) -> dict[str, bool]:
    env = os.environ if environ is None else environ
    return {name: bool(env.get(name, "").strip()) for name in ALL_VARIABLES}


def ratelimit_settings(environ: Mapping[str, str] | None = None) -> RateLimitSettings:
    """The JSON policy map (shared/ratelimit/policy.py validates it; None for the defaults) and the
    token that callers of the rate-limit service present."""
    env = os.environ if environ is None else environ
    return RateLimitSettings(
        policies_json=env.get(RATELIMIT_POLICIES_VAR, "").strip() or None,
        service_token=env.get(RATELIMIT_TOKEN_VAR, "").strip() or env.get(ADMIN_TOKEN_VAR, "").strip() or None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    sources_json: str | None = None  # STASHKIT_WEBHOOK_SOURCES; shared/webhooks/sources.py validates it

    def __repr__(self) -> str:  # the JSON holds the senders' secrets
        return f"WebhookSettings(sources_json={'***' if self.sources_json else None})"


def webhook_settings(environ: Mapping[str, str] | None = None) -> WebhookSettings:
    """The webhook sources as JSON (None: no source is configured, so every source is unknown)."""
    env = os.environ if environ is None else environ
    return WebhookSettings(sources_json=env.get(WEBHOOK_SOURCES_VAR, "").strip() or None)


CACHE_ROUTE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CACHE_DEFAULT_VARY = ("accept", "accept-language")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    origins: Mapping[str, str]  # route name -> origin base URL (no trailing slash), the whole allow-list
    vary_headers: tuple[str, ...] = CACHE_DEFAULT_VARY  # lower-case; the only request headers forwarded


def cache_settings(environ: Mapping[str, str] | None = None) -> CacheSettings:
    """The caching proxy's allow-list (`{"route": "https://origin.example/base"}`; none configured means
    every route is unknown) and the request headers a cached answer may vary on."""
    env = os.environ if environ is None else environ
    raw = env.get(CACHE_ORIGINS_VAR, "").strip() or "{}"
    try:
        origins = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(CACHE_ORIGINS_VAR, f"is not valid JSON: {exc}") from exc
    if not isinstance(origins, dict):
        raise ConfigurationError(CACHE_ORIGINS_VAR, 'must be a JSON object {"route": "https://origin/base"}')
    checked = {str(route): _origin_base(route, base) for route, base in origins.items()}
    vary_raw = env.get(CACHE_VARY_VAR, "").strip()  # unset or empty: the default set
    vary = tuple(h.strip().lower() for h in vary_raw.split(",") if h.strip()) or CACHE_DEFAULT_VARY
    for header in vary:
        if not re.fullmatch(r"[a-z0-9-]{1,64}", header) or header in ("authorization", "cookie"):
            raise ConfigurationError(CACHE_VARY_VAR, f"must list header names (never credentials), got {header!r}")
    return CacheSettings(origins=checked, vary_headers=vary)


def _origin_base(route: object, base: object) -> str:
    if not isinstance(route, str) or not re.fullmatch(CACHE_ROUTE_PATTERN, route):
        raise ConfigurationError(CACHE_ORIGINS_VAR, f"route {route!r} must be 1-64 letters, digits, _ or -")
    parts = urlsplit(base) if isinstance(base, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            CACHE_ORIGINS_VAR, f"origin of {route!r} must be an http(s) URL without user, query or fragment"
        )
    return str(base).rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderboardSettings:
    boards_json: str | None = None  # None: no boards (shared/leaderboards/boards.py validates the JSON)

    def __repr__(self) -> str:  # the JSON holds submit keys and signing secrets
        return f"LeaderboardSettings(boards_json={'***' if self.boards_json else None})"


def leaderboard_settings(environ: Mapping[str, str] | None = None) -> LeaderboardSettings:
    env = os.environ if environ is None else environ
    return LeaderboardSettings(boards_json=env.get(LEADERBOARDS_VAR, "").strip() or None)
