"""How long to wait before the next attempt (reference §5.3, upstash/docs qstash/features/retry.mdx).

In order: the `Upstash-Retry-Delay` expression (milliseconds); else a `Retry-After`,
`X-RateLimit-Reset`, `X-RateLimit-Reset-Requests` or `X-RateLimit-Reset-Tokens` response header
(seconds, an RFC 1123 date, or a Go duration) of at most a day, since "beyond this limit, the backoff
algorithm will be applied"; else `min(86400, e^(2.5·n))` seconds. The precedence between the first two
is undocumented; the publisher's explicit expression wins here.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

from emulators.qstash.durations import parse_duration_ms
from emulators.qstash.model import AttemptResult
from emulators.qstash.retry_expr import RetryDelayExpression

MAX_DELAY_MS = 86_400_000.0
RETRY_AFTER_HEADERS = ("Retry-After", "X-Ratelimit-Reset", "X-Ratelimit-Reset-Requests", "X-Ratelimit-Reset-Tokens")


def default_backoff_ms(retried: int) -> float:
    """min(86400, e^(2.5·n)) seconds, n = retries so far counting the one being scheduled (12 s first)."""
    exponent = 2.5 * retried
    return MAX_DELAY_MS if exponent > math.log(86_400) else math.exp(exponent) * 1000


def next_delay_ms(expression: RetryDelayExpression | None, result: AttemptResult, retried: int) -> float:
    """The wait before retry number `retried + 1`, before time scaling. `retried` = retries so far."""
    if expression is not None:
        value = expression.delay_ms(retried)
        if value is not None:
            return min(MAX_DELAY_MS, max(0.0, value))
    asked_ms = retry_after_ms(result)
    if asked_ms is not None:
        return asked_ms
    return default_backoff_ms(retried + 1)


def retry_after_ms(result: AttemptResult) -> float | None:
    for name in RETRY_AFTER_HEADERS:
        value = result.header_value(name)
        if value is None:
            continue
        asked_ms = _parse_retry_after(value.strip())
        if asked_ms is not None and 0 <= asked_ms <= MAX_DELAY_MS:
            return asked_ms
    return None


def _parse_retry_after(value: str) -> float | None:
    if value.isascii() and value.isdigit():
        return int(value[:12]) * 1000.0
    try:
        return parse_duration_ms(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # An HTTP date is absolute real time; the wait is measured against the real clock.
    return max(0.0, when.timestamp() - time.time()) * 1000
