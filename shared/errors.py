"""The one exception tree of the library; data lives in attributes, not in message strings.

    StashkitError
    ├── ConfigurationError      a required environment variable is missing or malformed
    ├── RedisUnavailable        Redis could not be reached, or did not answer in time: raised only by
    │                           shared/redis.py, which maps transport failures once (a Redis reply
    │                           error such as WRONGTYPE is a bug, not an outage, and is never mapped),
    │                           and by shared/locks when fewer than a majority of its endpoints answer
    ├── QStashUnavailable       QStash could not be reached, or answered 5xx (shared/qstash.py maps it)
    ├── Retry                   raised by a job handler: run this job again after `after_s` seconds
    ├── PermanentFailure        raised by a job handler: never retry; the message goes to the DLQ
    └── Problem                 an error a caller caused or must know about; becomes RFC 9457 JSON
        ├── InvalidInput        400/422: names the `field` (path, query or body) that is wrong
        ├── Unauthorized        401: missing or wrong bearer token
        │   └── BadSignature    401: a signature that does not hold (no bearer challenge)
        ├── Forbidden           403: e.g. an identifier on a deny list
        ├── NotFound            404
        ├── Conflict            409: the state of a shared resource refuses the request
        │   ├── LockNotAcquired another owner holds the lock (still, after waiting `wait_ms`)
        │   └── StaleToken      a fenced write carried a token older than one already seen
        ├── PayloadTooLarge     413
        ├── RateLimited         429: with Retry-After and RateLimit-* headers
        └── ServiceUnavailable  503: a dependency is down, or a feature is not configured

Library code raises these; only shared/http.py turns an exception into an HTTP status, in one function
(`to_problem`) that every catch site uses.
"""

from __future__ import annotations


class StashkitError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigurationError(StashkitError):
    """The environment does not configure a service; `variable` names what to set."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


class RedisUnavailable(StashkitError):
    """Redis (the REST endpoint) could not be reached or did not answer within the timeout."""


class QStashUnavailable(StashkitError):
    """QStash could not be reached, or answered 5xx."""


class Retry(StashkitError):
    """Raised by a job handler to be run again after `after_s` seconds (it counts as an attempt)."""

    def __init__(self, after_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {after_s} s")
        self.after_s = after_s
        self.reason = reason


class PermanentFailure(StashkitError):
    """Raised by a job handler whose input can never succeed: no retry, straight to the dead letters."""


class Problem(StashkitError):
    """An error shown to the caller as problem details: `status`, a short `title`, a `detail`."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
            self.slug = title.lower().replace(" ", "-")

    @property
    def type(self) -> str:
        return f"urn:stashkit:problem:{self.slug}"


class InvalidInput(Problem):
    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail, field=field, headers={"WWW-Authenticate": "Bearer"})


class BadSignature(Unauthorized):
    """401 for a request signed badly (QStash, a webhook sender, a game client): unlike a missing bearer
    token, no `WWW-Authenticate: Bearer` challenge, since no token would help."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        Problem.__init__(self, detail, field=field)


class Forbidden(Problem):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(Problem):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(Problem):
    status = 409
    title = "Conflict"
    slug = "conflict"


class LockNotAcquired(Conflict):
    """`FencedLock.hold` could not get the lock named `name` within `wait_ms` (shared/locks/lock.py)."""

    def __init__(self, name: str, wait_ms: int) -> None:
        super().__init__(f"the lock {name!r} is held by another owner (waited {wait_ms} ms)")
        self.name = name
        self.wait_ms = wait_ms


class StaleToken(Conflict):
    """A fenced write to `resource` carried `token`, older than `newest`, a token already accepted there
    or issued since by the lock (shared/locks/fencing.py): a newer holder exists, and the write was
    refused with nothing changed."""

    def __init__(self, resource: str, token: int, newest: int) -> None:
        super().__init__(f"fencing token {token} for {resource!r} is stale: {newest} is newer")
        self.resource = resource
        self.token = token
        self.newest = newest


class PayloadTooLarge(Problem):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class RateLimited(Problem):
    status = 429
    title = "Too many requests"
    slug = "rate-limited"


class ServiceUnavailable(Problem):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"
