"""What one request measured about itself: its id and its Redis round trips.

Dependency-free on purpose: the framework (shared/http.py) starts a request's record here, and the
Redis client (shared/redis.py) counts into it, so the framework never imports an HTTP client and a
function that never touches Redis never pays for one at cold start (README "Performance").

A record lives in a ContextVar, so concurrent requests on one event loop (Vercel Fluid, the local
server) each count their own calls.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestMetrics:
    request_id: str
    redis_round_trips: int = 0


_current: ContextVar[RequestMetrics | None] = ContextVar("stashkit_request_metrics", default=None)


def start_request(request_id: str) -> RequestMetrics:
    """Begin measuring the request that runs in this context."""
    metrics = RequestMetrics(request_id)
    _current.set(metrics)
    return metrics


def current_request() -> RequestMetrics | None:
    """The record of the request running in this context; None outside a request (scripts, tests)."""
    return _current.get()


def count_redis_round_trip() -> None:
    metrics = _current.get()
    if metrics is not None:
        metrics.redis_round_trips += 1
