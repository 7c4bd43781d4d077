"""Webhook triggers: verify a sender's signature, refuse replays, acknowledge in milliseconds, and let
QStash run the work as a retried job (with the dead letters behind it).

POST /api/webhooks/{source}              a sender's delivery (sources: STASHKIT_WEBHOOK_SOURCES)
GET  /api/webhooks/{source}/deliveries   (admin) what the built-in `webhooks.record` job kept

Answers: 202 {message_id, job} accepted; 200 {duplicate: true} for a delivery seen before; 200 for
GitHub's ping, Slack's URL verification ({challenge}) and an event no job is configured for
({ignored: true}); 401 for a bad, missing or stale signature; 404 for an unknown source; 413 over the
body limit (STASHKIT_MAX_BODY_BYTES); 503 when Redis or QStash is down (the sender retries).
"""

from __future__ import annotations

import functools
from typing import Annotated

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import NotFound
from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response
from shared.webhooks.receiver import Received, WebhookReceiver
from shared.webhooks.sources import Source, configured_sources


class SourcePath(msgspec.Struct):
    source: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class DeliveriesQuery(msgspec.Struct):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class Accepted(msgspec.Struct):
    message_id: str
    job: str


class Acknowledged(msgspec.Struct, omit_defaults=True):
    duplicate: bool = False
    ping: bool = False
    ignored: bool = False
    challenge: str | None = None
    event: str | None = None


@functools.cache
def _receiver() -> WebhookReceiver:
    return WebhookReceiver()


def _source(name: str) -> Source:
    source = configured_sources().get(name)
    if source is None:
        raise NotFound(f"no webhook source named {name!r}", field="source")
    return source


def _answer(received: Received) -> Response:
    if received.outcome == "accepted":
        assert received.message_id is not None
        assert received.job is not None
        return json_response(Accepted(message_id=received.message_id, job=received.job), status=202)
    if received.outcome == "challenge":  # Slack reads the challenge back from the JSON body
        return json_response(Acknowledged(challenge=received.challenge))
    outcome = received.outcome
    event = received.event if outcome == "ignored" else None  # which event no job is configured for
    acknowledged = Acknowledged(duplicate=outcome == "duplicate", ping=outcome == "ping",
                                ignored=outcome == "ignored", event=event)  # fmt: skip
    return json_response(acknowledged)


api = Api("webhooks", title="Webhook triggers")


@api.post(
    "/api/webhooks/{source}",
    summary="Receive a sender's webhook delivery (signed)",
    path_params=SourcePath,
    responses={202: Accepted, 200: Acknowledged, 401: None, 404: None, 413: None, 503: None},
)
async def receive(request: Request, path: SourcePath) -> Response:
    source = _source(path.source)  # before the body is read: an unknown source costs nothing
    body = await request.body()  # the exact bytes the sender signed
    return _answer(await _receiver().receive(source, request.headers, body))


@api.get(
    "/api/webhooks/{source}/deliveries",
    summary="The newest deliveries the webhooks.record job kept",
    path_params=SourcePath,
    query=DeliveriesQuery,
    responses={200: None, 404: None},
    admin=True,
)
async def deliveries(request: Request, path: SourcePath, query: DeliveriesQuery) -> Response:
    from shared.webhooks.record import recorded

    source = _source(path.source)
    return json_response({"source": source.name, "deliveries": await recorded(source.name, query.limit)})


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
