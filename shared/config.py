"""The environment, read in one place and turned into frozen settings.

Every variable the library reads is named here once. Nothing is read at import time: functions call
these when they first need a client, so a misconfigured deployment fails with a message naming the
variable, not with a KeyError deep inside an SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ConfigurationError

# Upstash's names first; Vercel's KV integration sets the same values under its own names.
REDIS_URL_VARS = ("UPSTASH_REDIS_REST_URL", "KV_REST_API_URL")
REDIS_TOKEN_VARS = ("UPSTASH_REDIS_REST_TOKEN", "KV_REST_API_TOKEN")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    rest_url: str
    rest_token: str

    def __repr__(self) -> str:  # never print the token
        return f"RedisSettings(rest_url={self.rest_url!r}, rest_token='***')"


def redis_settings(environ: Mapping[str, str] | None = None) -> RedisSettings:
    """The Upstash Redis REST endpoint, from `UPSTASH_REDIS_REST_*`, else Vercel's `KV_REST_API_*`.

    URL and token are taken as a pair from the same source, so a half-configured Upstash pair never
    silently mixes with a KV token.
    """
    env = os.environ if environ is None else environ
    for url_var, token_var in zip(REDIS_URL_VARS, REDIS_TOKEN_VARS, strict=True):
        url = env.get(url_var, "").strip()
        if not url:
            continue
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ConfigurationError(url_var, f"must be an http(s) URL such as https://xxx.upstash.io, got {url!r}")
        token = env.get(token_var, "").strip()
        if not token:
            raise ConfigurationError(token_var, f"is not set (it goes with {url_var})")
        return RedisSettings(url.rstrip("/"), token)
    raise ConfigurationError(REDIS_URL_VARS[0], f"is not set (nor Vercel's {REDIS_URL_VARS[1]})")
