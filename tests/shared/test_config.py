from __future__ import annotations

import pytest

from shared.config import RedisSettings, readonly_redis_settings, redis_settings
from shared.errors import ConfigurationError


def test_upstash_variables_configure_redis() -> None:
    settings = redis_settings({"UPSTASH_REDIS_REST_URL": "https://eu1.upstash.io/", "UPSTASH_REDIS_REST_TOKEN": "t"})
    assert settings.rest_url == "https://eu1.upstash.io"
    assert settings.rest_token == "t"


def test_vercel_kv_variables_are_the_fallback() -> None:
    settings = redis_settings({"KV_REST_API_URL": "https://kv.upstash.io", "KV_REST_API_TOKEN": "kv"})
    assert (settings.rest_url, settings.rest_token) == ("https://kv.upstash.io", "kv")


def test_upstash_pair_wins_over_kv_pair() -> None:
    env = {
        "UPSTASH_REDIS_REST_URL": "https://a.io",
        "UPSTASH_REDIS_REST_TOKEN": "a",
        "KV_REST_API_URL": "https://b.io",
        "KV_REST_API_TOKEN": "b",
    }
    assert redis_settings(env).rest_token == "a"


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({}, "UPSTASH_REDIS_REST_URL", "is not set (nor Vercel's KV_REST_API_URL)"),
        ({"UPSTASH_REDIS_REST_URL": "https://a.io", "KV_REST_API_TOKEN": "b"}, "UPSTASH_REDIS_REST_TOKEN", "not set"),
        ({"KV_REST_API_URL": "https://a.io"}, "KV_REST_API_TOKEN", "not set"),
        (
            {"UPSTASH_REDIS_REST_URL": "redis://a:6379", "UPSTASH_REDIS_REST_TOKEN": "t"},
            "UPSTASH_REDIS_REST_URL",
            "http(s) URL",
        ),
    ],
)
def test_missing_or_malformed_variable_is_named(env: dict[str, str], variable: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        redis_settings(env)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)
    assert words in str(caught.value)


def test_settings_never_show_the_token() -> None:
    settings = redis_settings({"UPSTASH_REDIS_REST_URL": "https://a.io", "UPSTASH_REDIS_REST_TOKEN": "s3cret"})
    assert "s3cret" not in repr(settings)


def test_readonly_token_pairs_with_the_configured_url() -> None:
    upstash = {
        "UPSTASH_REDIS_REST_URL": "https://a.io/",
        "UPSTASH_REDIS_REST_TOKEN": "rw",
        "UPSTASH_REDIS_REST_READONLY_TOKEN": "ro",
        "KV_REST_API_READ_ONLY_TOKEN": "kv-ro",
    }
    assert readonly_redis_settings(upstash) == RedisSettings("https://a.io", "ro")
    vercel = {"KV_REST_API_URL": "https://kv.io", "KV_REST_API_READ_ONLY_TOKEN": "kv-ro"}
    assert readonly_redis_settings(vercel) == RedisSettings("https://kv.io", "kv-ro")


def test_missing_readonly_token_is_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        readonly_redis_settings({"UPSTASH_REDIS_REST_URL": "https://a.io", "KV_REST_API_READ_ONLY_TOKEN": "x"})
    assert caught.value.variable == "UPSTASH_REDIS_REST_READONLY_TOKEN"
    assert "read-only token" in str(caught.value)
