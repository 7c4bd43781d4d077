"""`POST /v2/publish/{destination}`, `POST /v2/enqueue/{queue}/{destination}`, `POST /v2/batch` (reference §3).

The destination is the raw rest of the path, plus `?` and the raw query: the SDK pastes the URL into
the path and httpx moves its query string to the request's (G14). A URL group gets a bare JSON array
back, one item per endpoint (G15); a duplicate gets 202 and the original ids.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import ApiError, BadRequest, NotFound
from emulators.qstash.model import PublishOutcome, PublishRequest
from emulators.qstash.options import parse_publish_options
from emulators.qstash.routing import is_url
from emulators.qstash.wire import PublishedJson, published_json

NAME = re.compile(r"[A-Za-z0-9._\-]{1,200}")  # queue and URL-group names (openapi: alphanumerics - . _)
MAX_BATCH = 1000


def destination_of(raw: str, query_string: str) -> str:
    if is_url(raw):
        return raw + ("?" + query_string if query_string else "")
    name = unquote(raw)
    if not NAME.fullmatch(name):
        raise BadRequest(f"destination {name!r} is neither an http(s) URL nor a URL group name")
    return name


def valid_name(text: str, what: str) -> str:
    if not NAME.fullmatch(text):
        raise BadRequest(f"{what} {text!r} may only contain letters, digits, '-', '.' and '_'")
    return text


def reply_for(outcome: PublishOutcome) -> Reply:
    payload = outcome_json(outcome)
    return Reply(202 if outcome.deduplicated else 200, payload)


def outcome_json(outcome: PublishOutcome) -> PublishedJson | list[PublishedJson]:
    items = [published_json(d, True, outcome.deduplicated) for d in outcome.delivered]
    return items if outcome.to_group else items[0]


def publish(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    destination = destination_of(params.raw("destination"), request.query_string)
    options = parse_publish_options(request.headers.items())
    return reply_for(emulator.publish(PublishRequest(destination, request.body, options, request.client_ip)))


def enqueue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    queue = valid_name(params.text("queue"), "queue name")
    destination = destination_of(params.raw("destination"), request.query_string)
    options = parse_publish_options(request.headers.items())
    publish_request = PublishRequest(destination, request.body, options, request.client_ip, queue_name=queue)
    return reply_for(emulator.publish(publish_request))


def batch(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    entries = request.json()
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
        raise BadRequest(f"the body must be a JSON array of 1 to {MAX_BATCH} messages")
    requests = [_batch_entry(emulator, entry, index, request.client_ip) for index, entry in enumerate(entries)]
    return Reply(200, [outcome_json(emulator.publish(r)) for r in requests])


def _batch_entry(emulator: Emulator, entry: Any, index: int, client_ip: str) -> PublishRequest:
    """One batch item, fully validated before anything is published, so a bad batch publishes nothing."""
    try:
        if not isinstance(entry, dict):
            raise BadRequest("must be an object")
        destination = _batch_destination(emulator, entry.get("destination"))
        headers = entry.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise BadRequest("headers must be an object of strings")
        body = entry.get("body")
        if body is not None and not isinstance(body, str):
            raise BadRequest("body must be a string or null")
        queue = entry.get("queue")
        if queue is not None and not isinstance(queue, str):
            raise BadRequest("queue must be a string or null")
        options = parse_publish_options(headers.items())
    except ApiError as exc:
        exc.message = f"batch item {index}: {exc.message}"
        raise
    queue_name = valid_name(queue, "queue name") if queue is not None else None
    return PublishRequest(destination, (body or "").encode(), options, client_ip, queue_name=queue_name)


def _batch_destination(emulator: Emulator, destination: object) -> str:
    if not isinstance(destination, str) or not destination:
        raise BadRequest("destination must be a URL or a URL group name")
    if is_url(destination):
        return destination
    name = valid_name(destination, "URL group name")
    if name not in emulator.store.url_groups:
        raise NotFound(f"url group {name!r} not found")
    return name


ROUTES = [
    Route.of("POST", r"/v2/publish/(?P<destination>.+)", publish),
    Route.of("POST", r"/v2/enqueue/(?P<queue>[^/]+)/(?P<destination>.+)", enqueue),
    Route.of("POST", r"/v2/batch", batch),
]
