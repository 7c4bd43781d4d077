"""The one reader of tests/events/: Lambda event payloads written from AWS's documented shapes.

Each file is a realistic request to `/api/health`; `lambda_event` re-aims it at another method and path
(every field of that event shape that carries them), so the same five shapes serve every function.

    api_gateway_rest_v1     REST API (v1) proxy integration: multiValueHeaders, multiValueQueryStringParameters
    http_api_v2             HTTP API (payload 2.0): cookies array, a repeated query key in rawQueryString
    http_api_v2_binary      HTTP API POST with a base64 body (isBase64Encoded), application/octet-stream
    function_url            Lambda Function URL (payload 2.0, routeKey $default)
    alb_multi_value_headers ALB target group with multi-value headers enabled
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"
KINDS = ("api_gateway_rest_v1", "http_api_v2", "http_api_v2_binary", "function_url", "alb_multi_value_headers")


@cache
def _read(kind: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{kind}.json").read_text())
    return event


def _route(path: str) -> str:
    """The HTTP API route serverless.yml declares for `path`: `/api/<name>` or `/api/<name>/{proxy+}`."""
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) <= 3 else "/".join([*parts[:3], "{proxy+}"])


def lambda_event(kind: str, path: str, method: str | None = None) -> dict[str, Any]:
    """A fresh copy of tests/events/<kind>.json aimed at `path` (and `method`, else the file's)."""
    event = copy.deepcopy(_read(kind))
    context = event["requestContext"]
    if event.get("version") == "2.0":  # HTTP API payload 2.0 and Function URLs
        method = method or context["http"]["method"]
        event["rawPath"] = context["http"]["path"] = path
        context["http"]["method"] = method
        if event["routeKey"] != "$default":
            event["routeKey"] = context["routeKey"] = f"ANY {_route(path)}"
    elif "resource" in event:  # REST API (v1)
        method = method or event["httpMethod"]
        event["path"] = path
        event["httpMethod"] = context["httpMethod"] = method
        event["resource"] = context["resourcePath"] = _route(path)
        context["path"] = f"/{context['stage']}{path}"
        proxy = path.split("/", 3)[3] if path.count("/") >= 3 else None
        event["pathParameters"] = {"proxy": proxy} if proxy is not None else None
    else:  # ALB
        event["path"] = path
        event["httpMethod"] = method or event["httpMethod"]
    return event
