"""functions/health.py over HTTP: configuration and reachability, never a secret."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_TOKEN, GATEWAY_TOKEN, Functions, start_functions
from tests.emulators.qstash_fixtures import TOKEN as QSTASH_TOKEN


def test_healthy_when_redis_and_qstash_answer(functions: Functions) -> None:
    response = httpx.get(f"{functions.url}/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["qstash"]["ok"] is True
    assert body["checks"]["redis"]["latency_ms"] >= 0
    assert body["variables"]["UPSTASH_REDIS_REST_URL"] is True
    assert body["variables"]["KV_REST_API_URL"] is False
    for secret in (GATEWAY_TOKEN, ADMIN_TOKEN, QSTASH_TOKEN):
        assert secret not in response.text


def test_degraded_with_503_when_nothing_is_configured() -> None:
    server = start_functions({"UPSTASH_REDIS_REST_URL": "", "QSTASH_TOKEN": ""})
    try:
        response = httpx.get(f"{server.url}/api/health")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["redis"] == {
            "ok": False,
            "error": "not configured: UPSTASH_REDIS_REST_URL is not set (nor Vercel's KV_REST_API_URL)",
        }
        assert checks["qstash"]["error"] == "not configured: QSTASH_TOKEN is not set"
    finally:
        server.process.stop()


def test_unreachable_redis_is_reported_not_raised() -> None:
    server = start_functions({"UPSTASH_REDIS_REST_URL": "http://127.0.0.1:9", "UPSTASH_REDIS_REST_TOKEN": "x"})
    try:
        response = httpx.get(f"{server.url}/api/health")
        assert response.status_code == 503
        assert response.json()["checks"]["redis"]["error"].startswith("unreachable (")
    finally:
        server.process.stop()
