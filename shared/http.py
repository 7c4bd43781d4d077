"""How every function is built: a Starlette app with validated inputs, problem-details errors, a request
id, one JSON log line per request, a body size limit and an OpenAPI 3.1 document.

    api = Api("things", title="Things")

    @api.post("/api/things", summary="...", body=Thing, responses={200: Thing},
              limit=RateLimit("api", key=by_ip))          # shared/ratelimit/http.py
    async def create(request: Request, body: Thing) -> Thing: ...

    app = create_app(api)

Inputs are declared once (msgspec Structs for `body`, `query`, `path`): the same types validate requests
and generate `/api/<name>/openapi.json`. msgspec was chosen over pydantic for cold starts: `import
msgspec` cost 50 ms against 142 ms for `from pydantic import BaseModel` (net, median of 15 fresh
processes, README "Functions"), and it validates faster.

Where things happen, so that every function behaves alike:
- **Errors.** Library code raises `shared.errors`; `to_problem` is the one mapping from an exception to
  what the caller sees, and `RequestContext` the one place that catches (Starlette's own 404 and 405
  are handed to it too). Unexpected errors become a 500 whose traceback goes to the log, never to the
  caller.
- **Settings** are read once per app, on its first request and inside that catch site, so a bad
  variable gives a problem-details 500 with a request id and a log line, not a bare crash.
- **Route guards** (admin token, rate limit) are arguments of the route, never decorators whose order
  could silently drop them.
- This module imports no HTTP client: request metrics live in shared/metrics.py, and a function that
  never calls Redis never loads one.
"""

from __future__ import annotations

import hmac
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import HttpSettings, http_settings
from shared.errors import (
    ConfigurationError,
    InvalidInput,
    PayloadTooLarge,
    Problem,
    QStashUnavailable,
    RedisUnavailable,
    ServiceUnavailable,
    Unauthorized,
)
from shared.metrics import RequestMetrics, start_request

# `async def handler(request, *, body=..., query=..., path=...)`, the keywords being the route's declared
# input types; it returns a Response, or anything msgspec encodes as JSON.
Handler = Callable[..., Awaitable[object]]
PROBLEM_JSON = "application/problem+json"
# Mangum sends any other content type base64-encoded; problem+json is text (pass to Mangum()).
TEXT_MIME_TYPES = [
    "text/",
    "application/json",
    PROBLEM_JSON,
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "application/vnd.oai.openapi",
]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_FIELD_AT = re.compile(r"at `\$\.?([^`]*)`")
_FIELD_NAMED = re.compile(r"field `([^`]+)`")
_SETTINGS = "stashkit.settings"  # scope keys this module sets
_REQUEST_ID_KEY = "stashkit.request_id"
_ROUTE = "stashkit.route"

log = logging.getLogger("stashkit.request")


class RouteLimit(Protocol):
    """A guard declared on a route that admits the request before its handler runs, or refuses it (a rate
    limit: shared/ratelimit/http.py `RateLimit`). `statuses` and `headers` document it in the OpenAPI."""

    statuses: tuple[int, ...]  # what it may answer instead of the handler
    headers: tuple[str, ...]  # what it adds to every response

    def around(self, request: Request, call: Callable[[], Awaitable[Response]]) -> Awaitable[Response]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    query: type | None = None
    path_params: type | None = None
    responses: Mapping[int, type | None] = field(default_factory=dict)
    admin: bool = False
    limit: RouteLimit | None = None


@dataclass
class Api:
    """The operations of one function, declared with the types that validate them."""

    name: str
    title: str
    version: str = "1.0.0"
    # The largest body this function must always accept, whatever STASHKIT_MAX_BODY_BYTES says (QStash
    # deliveries and callbacks carry payloads the function did not choose).
    min_body_bytes: int = 0
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type | None = None,
        query: type | None = None,
        path_params: type | None = None,
        responses: Mapping[int, type | None] | None = None,
        admin: bool = False,
        limit: RouteLimit | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    handler=handler,
                    summary=summary,
                    body=body,
                    query=query,
                    path_params=path_params,
                    responses=dict(responses or {200: None}),
                    admin=admin,
                    limit=limit,
                )
            )
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)


def json_response(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(content), status, headers, media_type="application/json")


def problem_response(problem: Problem, request_id: str | None) -> Response:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    if request_id is not None:
        body["request_id"] = request_id
    return Response(msgspec.json.encode(body), problem.status, problem.headers, media_type=PROBLEM_JSON)


def to_problem(exc: BaseException) -> Problem:
    """What the caller sees of an exception: the one mapping, used by every catch site."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, HTTPException):  # Starlette's router: no such path, or method not allowed
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return Problem(exc.detail, headers=dict(exc.headers or {}), status=exc.status_code, title=title)
    if isinstance(exc, RedisUnavailable | QStashUnavailable):
        return ServiceUnavailable(f"{exc}; retry later", headers={"Retry-After": "1"})
    if isinstance(exc, ConfigurationError):  # the variable is named in the log, not to the caller
        return Problem("this function is misconfigured; the request id identifies it in the logs")
    return Problem("an unexpected error occurred; the request id identifies it in the logs")


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError, where: str) -> InvalidInput:
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):  # a ValidationError is also a DecodeError
        return InvalidInput(f"the {where} is not valid JSON: {message}", field=where, status=400)
    match = _FIELD_AT.search(message) or _FIELD_NAMED.search(message)
    name = match.group(1) if match and match.group(1) else None
    return InvalidInput(f"{where}: {message}", field=f"{where}.{name}" if name else where)


async def _inputs(op: Operation, request: Request) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    try:
        if op.path_params is not None:
            inputs["path"] = msgspec.convert(request.path_params, op.path_params, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, "path") from exc
    try:
        if op.query is not None:
            inputs["query"] = msgspec.convert(dict(request.query_params), op.query, strict=False)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, "query") from exc
    if op.body is not None:
        raw = await request.body()
        if not raw.strip():
            raise InvalidInput("a JSON request body is required", field="body", status=400)
        try:
            inputs["body"] = msgspec.json.decode(raw, type=op.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _invalid(exc, "body") from exc
    return inputs


def request_settings(request: Request) -> HttpSettings:
    """The settings of the app serving this request (read once, on its first request)."""
    settings: HttpSettings = request.scope[_SETTINGS]
    return settings


def bearer_matches(request: Request, expected: str | None) -> bool:
    """Whether the request carries `Authorization: Bearer <expected>`, compared in constant time."""
    if expected is None:
        return False
    header = request.headers.get("authorization", "")
    offered = header[7:] if header[:7].lower() == "bearer " else ""
    return hmac.compare_digest(offered.encode(), expected.encode())


def require_admin(request: Request) -> None:
    """The bearer check against STASHKIT_ADMIN_TOKEN; refuses everything when it is unset."""
    expected = request_settings(request).admin_token
    if expected is None:
        raise ServiceUnavailable("admin routes are disabled: STASHKIT_ADMIN_TOKEN is not set")
    if not bearer_matches(request, expected):
        raise Unauthorized("this route needs `Authorization: Bearer <admin token>`")


def client_ip(request: Request) -> str:
    """The caller's address, taken only from what the platform vouches for and the caller cannot set:

    - Lambda behind API Gateway (REST or HTTP API) or a Function URL: the event's `requestContext`
      source IP, the peer of the connection AWS accepted (Mangum puts it in `scope["client"]`);
    - Lambda behind an ALB: the last X-Forwarded-For entry, the one the ALB appended (any earlier
      entries are whatever the caller sent);
    - Vercel (`VERCEL=1`): X-Forwarded-For, which Vercel's edge overwrites with the caller's address
      "to prevent IP spoofing" (Vercel docs, "Request headers");
    - anywhere else (`make dev`, a plain server): the TCP peer. X-Forwarded-For is never trusted there.
    """
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        if "elb" in event.get("requestContext", {}):
            return request.headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip() or "unknown"
    elif request_settings(request).on_vercel:
        return request.headers.get("x-forwarded-for", "").split(",", 1)[0].strip() or "unknown"
    return request.client.host if request.client and request.client.host else "unknown"


def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        result = await op.handler(request, **await _inputs(op, request))
        return result if isinstance(result, Response) else json_response(result)

    async def endpoint(request: Request) -> Response:
        request.scope[_ROUTE] = op.path
        if op.admin:
            require_admin(request)
        if op.limit is None:
            return await handle(request)
        return await op.limit.around(request, lambda: handle(request))

    return endpoint


async def _to_request_context(_request: Request, exc: Exception) -> Response:
    """Starlette's router raises HTTPException for 404 and 405: hand it to RequestContext, the one
    place errors become responses (Starlette would answer text/plain)."""
    raise exc


class RequestContext:
    """Outermost middleware: request id, settings, body size limit, request metrics, one log line, and
    the one catch site: every error becomes `to_problem(exc)`, and the log line says what it was."""

    def __init__(self, app: ASGIApp, api: Api, settings: HttpSettings | None = None) -> None:
        self.app = app
        self.function = api.name
        self._min_body_bytes = api.min_body_bytes
        self._settings = settings

    def settings(self) -> HttpSettings:
        if self._settings is None:  # once per app: a failure is retried by the next request
            self._settings = http_settings()
        return self._settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope[_REQUEST_ID_KEY] = request_id
        metrics = start_request(request_id)
        status = 500
        response_started = False
        failure: Exception | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            settings = scope[_SETTINGS] = self.settings()
            limit = max(settings.max_body_bytes, self._min_body_bytes)
            declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"the request body is over {limit} bytes")
            await self.app(scope, _limited(receive, limit), send_with_id)
        except Exception as exc:
            failure = exc
            if not response_started:  # a response already under way cannot be replaced
                await problem_response(to_problem(exc), request_id)(scope, receive, send_with_id)
        finally:
            _log_request(self.function, scope, status, started, metrics, failure)


def _limited(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive, for bodies that declare no (or a false) Content-Length."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"the request body is over {limit} bytes")
        return message

    return receive_limited


class _StdoutHandler(logging.Handler):
    """Writes each record's message as one line to whatever `sys.stdout` is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(record.getMessage() + "\n")
        sys.stdout.flush()


def _configure_logging() -> None:
    """Every `stashkit.*` logger writes JSON lines to stdout, which Lambda and Vercel collect."""
    root = logging.getLogger("stashkit")
    if not root.handlers:
        root.addHandler(_StdoutHandler())
        root.setLevel(logging.INFO)
        root.propagate = False


def _log_request(
    function: str, scope: Scope, status: int, started: float, metrics: RequestMetrics, failure: Exception | None
) -> None:
    line: dict[str, Any] = {
        "function": function,
        "method": scope["method"],
        "route": scope.get(_ROUTE),
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "redis_round_trips": metrics.redis_round_trips,
        "request_id": metrics.request_id,
    }
    if failure is not None and status >= 500:
        line["error"] = type(failure).__name__
        if isinstance(failure, ConfigurationError | RedisUnavailable | QStashUnavailable):
            line["detail"] = str(failure)  # names the variable or the failure, never a secret's value
        elif not isinstance(failure, Problem):  # a bug: code lines of the traceback, never local values
            line["traceback"] = "".join(traceback.format_exception(failure))
    log.log(logging.ERROR if status >= 500 else logging.INFO, msgspec.json.encode(line).decode())


def create_app(api: Api, *, settings: HttpSettings | None = None) -> Starlette:
    """The ASGI app of one function. `settings` replaces the environment's (tests); by default they are
    read from it on the first request."""
    from shared.openapi import openapi_document  # only the function's docs route needs it

    document: bytes | None = None

    async def openapi(request: Request) -> Response:
        nonlocal document
        if request.method not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        if document is None:
            document = msgspec.json.encode(openapi_document(api))
        return Response(document, media_type="application/json")

    _configure_logging()
    # The document's path is reserved for every method (first, so no route parameter can take it).
    every_method = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes = [Route(f"/api/{api.name}/openapi.json", openapi, methods=every_method)]
    routes += [Route(op.path, _endpoint(op), methods=[op.method]) for op in api.operations]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContext, api=api, settings=settings)],
        exception_handlers={HTTPException: _to_request_context},
    )
    # A slash redirect would answer 307 with an empty body, and behind an API Gateway stage its
    # Location drops the stage; an unknown path is a 404 problem instead.
    app.router.redirect_slashes = False
    return app
