"""The caching proxy's pure parts: the allow-list's URL building, Cache-Control, ETags, configuration."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.cache.proxy import cache_control, etag_matches, lifetimes, upstream_url
from shared.config import CACHE_ORIGINS_VAR, CACHE_VARY_VAR, cache_settings
from shared.errors import ConfigurationError, InvalidInput

BASE = "https://origin.example/base"


@pytest.mark.parametrize(
    "path",
    [
        "..", "a/../../x", "./x", "a//b", "/evil.example", "%2e%2e/x", "..%2fx", "%2F%2Fevil.example", "%5cx",
        "\\\\evil.example", "@evil.example", "a@b", "%40evil", "x%00", "%252e%252e", "a?b", "a#b", "a b",
        "http://evil.example/x",
    ],
)  # fmt: skip
def test_no_path_leaves_the_origin(path: str) -> None:
    with pytest.raises(InvalidInput):
        upstream_url(BASE, path, "")


def test_paths_and_queries_stay_under_the_base() -> None:
    assert upstream_url(BASE, "docs/intro", "a=1&b=//evil@x") == f"{BASE}/docs/intro?a=1&b=//evil@x"
    url = httpx.URL(upstream_url(BASE, "a%20b/c:d", "next=http://evil.example"))
    assert (url.host, url.raw_path.decode()) == ("origin.example", "/base/a%20b/c:d?next=http://evil.example")


def test_cache_control_and_lifetimes() -> None:
    assert cache_control('max-age=60, S-MAXAGE="120", no-cache') == {"max-age": "60", "s-maxage": "120", "no-cache": ""}
    answer = httpx.Response(200, headers={"cache-control": "max-age=60, s-maxage=100, stale-if-error=5", "age": "10"})
    assert lifetimes(answer, ["accept"]) == (90.0, 0.0, 5.0)
    assert lifetimes(httpx.Response(200, headers={"cache-control": "no-cache, stale-if-error=9"}), []) == (0, 0, 9)
    assert lifetimes(httpx.Response(500, headers={"cache-control": "max-age=60"}), []) is None
    assert lifetimes(httpx.Response(200, headers={"cache-control": "max-age=6", "vary": "*"}), ["accept"]) is None


def test_etags_compare_weakly() -> None:
    assert etag_matches('W/"a", "b"', '"a"')
    assert etag_matches("*", '"x"')
    assert not etag_matches('"a"', "")
    assert not etag_matches('"a"', '"b"')


@pytest.mark.parametrize(
    "origins",
    ["not json", "[]", json.dumps({"bad route!": BASE}), json.dumps({"r": "ftp://x"}),
     json.dumps({"r": "https://user@x.example"}), json.dumps({"r": "https://x.example/?q=1"})],
)  # fmt: skip
def test_a_bad_allow_list_names_the_variable(origins: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        cache_settings({CACHE_ORIGINS_VAR: origins})
    assert raised.value.variable == CACHE_ORIGINS_VAR


def test_settings_defaults_and_vary_headers() -> None:
    settings = cache_settings({CACHE_ORIGINS_VAR: json.dumps({"docs": BASE + "/"})})
    assert settings.origins == {"docs": BASE}
    assert settings.vary_headers == ("accept", "accept-language")
    assert cache_settings({CACHE_VARY_VAR: "Accept, X-Tenant"}).vary_headers == ("accept", "x-tenant")
    with pytest.raises(ConfigurationError):
        cache_settings({CACHE_VARY_VAR: "authorization"})
