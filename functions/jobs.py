"""The jobs function: QStash delivers every job run here, signed; operators enqueue and look runs up.

POST /api/jobs/{name}                the QStash destination: signature verified over the raw body and
                                     the public URL first, then the run claimed once and executed
POST /api/jobs/{name}/enqueue        (admin) enqueue a run from any language: {payload, delay_s, ...}
GET  /api/jobs/messages/{id}         (admin) a run's status record

Answers to QStash: 200 done (or already done, or skipped), 409 busy elsewhere and 503 retry later (both
with Retry-After), 500 failed (QStash retries), 489 with Upstash-NonRetryable-Error for a permanent
failure (straight to the dead letters).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import NotFound, Problem, ServiceUnavailable
from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response, problem_response
from shared.jobs.guard import SignedByQStash
from shared.jobs.registry import get_job
from shared.jobs.runner import Delivery, JobRunner, RunResult
from shared.jobs.store import JobStore, StatusRecord

JobName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class JobPath(msgspec.Struct):
    name: JobName


class MessagePath(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class EnqueueRequest(msgspec.Struct, forbid_unknown_fields=True):
    payload: Any = None
    delay_s: Annotated[float, msgspec.Meta(ge=0, le=604_800)] | None = None
    not_before: Annotated[float, msgspec.Meta(ge=0)] | None = None  # Unix seconds
    dedup_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class Enqueued(msgspec.Struct):
    message_id: str


class RunBody(msgspec.Struct, omit_defaults=True):
    status: str
    message_id: str
    attempt: int
    error: str | None = None


@functools.cache
def _runner() -> JobRunner:
    return JobRunner()


api = Api("jobs", title="Jobs", min_body_bytes=1024 * 1024)  # a QStash message is at most 1 MB (paid plans)


@api.post(
    "/api/jobs/{name}",
    summary="Run a job (the QStash destination; signed)",
    path_params=JobPath,
    responses={200: RunBody, 401: None, 404: None, 409: None, 489: None, 500: None, 503: None},
    limit=SignedByQStash(),  # before anything else: an unsigned request learns nothing, runs nothing
)
async def deliver(request: Request, path: JobPath) -> Response:
    body = await request.body()  # the bytes the guard verified
    job = get_job(path.name)
    message_id = request.headers.get("upstash-message-id", "")
    if not message_id:
        raise Problem("a delivery carries Upstash-Message-Id", status=400, title="Bad request")
    retried = request.headers.get("upstash-retried", "0")
    delivery = Delivery(
        message_id=message_id,
        attempt=int(retried) + 1 if retried.isdigit() else 1,
        body=body,
        schedule_id=request.headers.get("upstash-schedule-id"),
    )
    return _answer(await _runner().run(job, delivery), message_id, request)


def _answer(result: RunResult, message_id: str, request: Request) -> Response:
    request_id = request.scope.get("stashkit.request_id")
    if result.outcome in ("succeeded", "duplicate", "skipped"):
        return json_response(RunBody(status=result.outcome, message_id=message_id, attempt=result.attempt))
    wait = {"Retry-After": str(max(1, round(result.retry_after_s)))}
    if result.outcome == "busy":
        problem = Problem("another delivery of this message is running", status=409, title="Conflict", headers=wait)
    elif result.outcome == "retry":
        problem = ServiceUnavailable(result.error or "the job asked to run later", headers=wait)
    elif result.outcome == "permanent":
        problem = Problem(result.error or "permanent failure", status=489, title="Permanent failure",
                          headers={"Upstash-NonRetryable-Error": "true"})  # fmt: skip
    else:  # failed, timeout: the error's type and message, never a traceback (that goes to the log)
        problem = Problem(result.error or "the job failed", title="Job failed")
    return problem_response(problem, request_id)


@api.post(
    "/api/jobs/{name}/enqueue",
    summary="Enqueue a run of a job",
    path_params=JobPath,
    body=EnqueueRequest,
    responses={200: Enqueued, 404: None},
    admin=True,
)
async def enqueue(request: Request, path: JobPath, body: EnqueueRequest) -> Enqueued:
    job = get_job(path.name)
    message_id = await job.enqueue(body.payload, delay_s=body.delay_s, not_before=body.not_before,
                                   dedup_id=body.dedup_id)  # fmt: skip
    return Enqueued(message_id=message_id)


@api.get(
    "/api/jobs/messages/{id}",
    summary="A run's status record",
    path_params=MessagePath,
    responses={200: StatusRecord, 404: None},
    admin=True,
)
async def status(request: Request, path: MessagePath) -> StatusRecord:
    record = await JobStore().status(path.id)
    if record is None:
        raise NotFound(f"no status record for message {path.id!r} (unknown, or older than a week)", field="id")
    return record


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
