"""The dead-letter function: QStash reports a job run whose retries ran out; operators look and redrive.

POST   /api/dlq/callback        QStash's failure callback (signed): record the dead letter, mark the run dead
GET    /api/dlq/entries         (admin) ?job=&since=&until=&status=&cursor=&limit=, newest first
GET    /api/dlq/entries/{id}    (admin) one entry
DELETE /api/dlq/entries/{id}    (admin) forget it
POST   /api/dlq/purge           (admin) {job, since, until, status}: delete every match
POST   /api/dlq/redrive         (admin) {"ids": [...]} or {"filter": {...}}: publish again, each once
POST   /api/dlq/reconcile       (admin) record what QStash's own DLQ holds and we lack

Times are epoch milliseconds. The callback answers 503 when Redis is down, so QStash retries it and
nothing is lost; a body that is not a failure callback is a 400/422 naming the field.
"""

from __future__ import annotations

import functools
from typing import Annotated

import msgspec
from mangum import Mangum
from starlette.requests import Request

from shared.errors import InvalidInput, NotFound
from shared.http import TEXT_MIME_TYPES, Api, create_app
from shared.jobs.dlq import DeadLetters, Status
from shared.jobs.dlq.callback import FailureCallback, created_at_ms, letter_from_callback
from shared.jobs.dlq.wire import (
    EntriesPage,
    EntryBody,
    ReconcileBody,
    RedriveBody,
    entry_body,
    page_body,
    reconcile_body,
    redrive_body,
)
from shared.jobs.guard import SignedByQStash
from shared.jobs.store import JobStore

JobName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
EntryId = Annotated[str, msgspec.Meta(pattern=r"^dl_[0-9a-f]{24}$")]
Millis = Annotated[int, msgspec.Meta(ge=0)]


class Filter(msgspec.Struct, forbid_unknown_fields=True):
    job: JobName | None = None
    since: Millis | None = None  # failed_at >= since
    until: Millis | None = None  # failed_at < until
    status: Status | None = None


class EntriesQuery(Filter):
    cursor: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 50


class RedriveFilter(msgspec.Struct, forbid_unknown_fields=True):
    job: JobName | None = None
    since: Millis | None = None
    until: Millis | None = None


class RedriveRequest(msgspec.Struct, forbid_unknown_fields=True):
    ids: Annotated[list[EntryId], msgspec.Meta(min_length=1, max_length=100)] | None = None
    filter: RedriveFilter | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100  # with `filter`: at most this many


class EntryPath(msgspec.Struct):
    id: EntryId


class Recorded(msgspec.Struct):
    id: str
    message_id: str
    outcome: str  # recorded | duplicate | deleted | expired


class Deleted(msgspec.Struct):
    deleted: bool


class Purged(msgspec.Struct):
    purged: int


@functools.cache
def _letters() -> DeadLetters:
    return DeadLetters()


# A failure callback carries the message's body and the last response, base64-encoded: accept what a
# QStash message of 1 MB (its paid plans' largest) turns into, whatever the general body limit says.
api = Api("dlq", title="Dead letters", min_body_bytes=3 * 1024 * 1024)


@api.post(
    "/api/dlq/callback",
    summary="QStash's failure callback (signed)",
    body=FailureCallback,
    responses={200: Recorded, 401: None, 503: None},
    limit=SignedByQStash(),
)
async def callback(request: Request, body: FailureCallback) -> Recorded:
    letter = letter_from_callback(body)
    id_, outcome = await _letters().record_outcome(letter, created_at_ms=created_at_ms(body.created_at))
    await JobStore().mark(letter.message_id, "dead", letter.error)
    return Recorded(id=id_, message_id=letter.message_id, outcome=outcome)


@api.get("/api/dlq/entries", summary="Dead letters, newest first", query=EntriesQuery,
         responses={200: EntriesPage}, admin=True)  # fmt: skip
async def list_entries(request: Request, query: EntriesQuery) -> EntriesPage:
    page = await _letters().list(job=query.job, since=query.since, until=query.until, status=query.status,
                                 cursor=query.cursor, limit=query.limit)  # fmt: skip
    return page_body(page)


@api.get("/api/dlq/entries/{id}", summary="One dead letter", path_params=EntryPath,
         responses={200: EntryBody, 404: None}, admin=True)  # fmt: skip
async def get_entry(request: Request, path: EntryPath) -> EntryBody:
    found = await _letters().get(path.id)
    if found is None:
        raise NotFound(f"no dead letter {path.id!r} (unknown, deleted, or past its retention)", field="id")
    return entry_body(found)


@api.delete("/api/dlq/entries/{id}", summary="Forget a dead letter", path_params=EntryPath,
            responses={200: Deleted, 404: None}, admin=True)  # fmt: skip
async def delete_entry(request: Request, path: EntryPath) -> Deleted:
    if not await _letters().delete(path.id):
        raise NotFound(f"no dead letter {path.id!r}", field="id")
    return Deleted(deleted=True)


@api.post("/api/dlq/purge", summary="Delete every matching dead letter", body=Filter,
          responses={200: Purged}, admin=True)  # fmt: skip
async def purge_entries(request: Request, body: Filter) -> Purged:
    count = await _letters().purge(job=body.job, since=body.since, until=body.until, status=body.status)
    return Purged(purged=count)


@api.post("/api/dlq/redrive", summary="Publish dead letters again, each once", body=RedriveRequest,
          responses={200: RedriveBody, 503: None}, admin=True)  # fmt: skip
async def redrive_entries(request: Request, body: RedriveRequest) -> RedriveBody:
    if (body.ids is None) == (body.filter is None):
        raise InvalidInput('give either "ids" or "filter"', field="body.ids")
    letters, where = _letters(), body.filter or RedriveFilter()
    report = await letters.redrive_report(body.ids, job=where.job, since=where.since, until=where.until,
                                          limit=body.limit)  # fmt: skip
    return redrive_body(report)


@api.post("/api/dlq/reconcile", summary="Record what QStash's DLQ holds and the store lacks",
          responses={200: ReconcileBody, 503: None}, admin=True)  # fmt: skip
async def reconcile_dlq(request: Request) -> ReconcileBody:
    return reconcile_body(await _letters().reconcile())


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
