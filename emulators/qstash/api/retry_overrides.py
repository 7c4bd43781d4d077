"""The options a message retried from the DLQ gets: its original ones, with the original timing and
deduplication spent, overridden by any configuration header on the retry request (openapi "Retry a DLQ
message": "You can pass all configuration headers to override the configuration of the original
message", e.g. `Upstash-Retries: 0`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.datastructures import Headers

from emulators.qstash.options import PublishOptions, parse_publish_options

# Header -> the PublishOptions field it sets. Forwarded and callback headers are not overridable here.
OVERRIDABLE: dict[str, str] = {
    "upstash-method": "method",
    "upstash-retries": "retries",
    "upstash-retry-delay": "retry_delay",
    "upstash-timeout": "timeout_ms",
    "upstash-delay": "delay_ms",
    "upstash-not-before": "not_before_ms",
    "upstash-callback": "callback",
    "upstash-failure-callback": "failure_callback",
    "upstash-label": "label",
    "upstash-flow-control-key": "flow_control",
    "upstash-flow-control-value": "flow_control",
    "upstash-deduplication-id": "deduplication_id",
    "upstash-content-based-deduplication": "content_based_deduplication",
    "upstash-redact-fields": "redaction",
}


def retried_options(original: PublishOptions, headers: Headers) -> PublishOptions:
    # Due now and not a duplicate of itself, unless the retry request says otherwise.
    spent = replace(
        original, delay_ms=0.0, not_before_ms=None, deduplication_id=None, content_based_deduplication=False
    )
    given = [(name, value) for name, value in headers.items() if name.lower() in OVERRIDABLE]
    if not given:
        return spent
    parsed = parse_publish_options(given)  # validated as on publish: a bad header is a 400 naming it
    fields = {OVERRIDABLE[name.lower()] for name, _ in given}
    changes: dict[str, Any] = {field: getattr(parsed, field) for field in fields}
    return replace(spent, **changes)
