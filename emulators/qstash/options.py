"""`Upstash-*` request headers -> PublishOptions, validated once at publish time (reference §2).

Every malformed header is a BadHeader naming it, so a caller sees `400 {"error": "invalid
Upstash-Delay header: ..."}` instead of a message that fails later. Header names arrive lower-cased
(ASGI) or in any case (batch JSON); forwarded names are re-cased the way Go's net/http canonicalises
them (`x-custom` -> `X-Custom`), as the real service reports them.

Callback configuration follows the documented mapping `Upstash-Callback-<X>` = option `Upstash-<X>`
of the callback message (reference §5.5, §11): `Upstash-Callback-Forward-Y: v` reaches the callback as
`Y: v`; `Upstash-Callback-Retries`, `-Retry-Delay`, `-Timeout`, `-Delay`, `-Method` configure it. Other
`Upstash-Callback-*` headers (the SDK's `callback_headers={"cb": "1"}` form) are only recorded in
`callbackHeader`. The same holds for `Upstash-Failure-Callback-*`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from emulators.qstash.durations import parse_duration_ms
from emulators.qstash.errors import BadHeader
from emulators.qstash.flow_spec import FlowControlSpec, parse_flow_control
from emulators.qstash.retry_expr import ExpressionError, RetryDelayExpression, parse_retry_delay
from emulators.qstash.routing import is_url

HttpMethod = Literal["GET", "POST", "PUT", "DELETE", "PATCH"]
HeaderList = tuple[tuple[str, str], ...]
HeaderMap = dict[str, list[str]]

METHODS: frozenset[str] = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH"))
DEFAULT_RETRIES = 3  # reference §5.3
MAX_RETRIES = 100  # real plans allow at most 20; more is a typo, and would keep a message alive for months
FORWARD = "upstash-forward-"
CALLBACK = "upstash-callback-"
FAILURE_CALLBACK = "upstash-failure-callback-"


@dataclass(frozen=True, slots=True)
class Redaction:
    """`Upstash-Redact-Fields`: what the API shows as `REDACTED:<sha256>` (deliveries are unchanged)."""

    body: bool = False
    all_headers: bool = False
    headers: frozenset[str] = frozenset()  # lower-cased names

    def hides_header(self, name: str) -> bool:
        return self.all_headers or name.lower() in self.headers


@dataclass(frozen=True, slots=True)
class CallbackOptions:
    method: HttpMethod = "POST"
    retries: int | None = None  # None: the source message's retries ("use the retry setting", openapi)
    retry_delay: RetryDelayExpression | None = None
    timeout_ms: float | None = None
    delay_ms: float = 0.0
    forward_headers: HeaderList = ()
    recorded: HeaderMap = field(default_factory=dict)  # what `callbackHeader` reports


# Shared instances for the common case: every retained message holds its options, and fewer objects
# make the garbage collector's full passes shorter (they stall deliveries; see gc_policy.py).
NO_REDACTION = Redaction()
NO_CALLBACK_OPTIONS = CallbackOptions()


@dataclass(frozen=True, slots=True)
class PublishOptions:
    method: HttpMethod = "POST"
    content_type: str | None = None
    forward_headers: HeaderList = ()
    retries: int = DEFAULT_RETRIES
    retry_delay: RetryDelayExpression | None = None
    timeout_ms: float | None = None
    delay_ms: float = 0.0
    not_before_ms: float | None = None
    callback: str | None = None
    callback_options: CallbackOptions = NO_CALLBACK_OPTIONS
    failure_callback: str | None = None
    failure_callback_options: CallbackOptions = NO_CALLBACK_OPTIONS
    deduplication_id: str | None = None
    content_based_deduplication: bool = False
    flow_control: FlowControlSpec | None = None
    label: str | None = None
    redaction: Redaction = NO_REDACTION

    @property
    def labels(self) -> tuple[str, ...]:
        """`Upstash-Label: a,b` carries several labels; QStash reports `label` (the first) and `labels`."""
        if not self.label:
            return ()
        return tuple(part.strip() for part in self.label.split(",") if part.strip())

    def forwarded_map(self) -> HeaderMap:
        """The headers the destination receives besides QStash's own, as `{name: [values]}`."""
        result: HeaderMap = {}
        if self.content_type is not None:
            result["Content-Type"] = [self.content_type]
        for name, value in self.forward_headers:
            result.setdefault(name, []).append(value)
        return result


def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey for ASCII names: `x-custom-id` -> `X-Custom-Id`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def parse_publish_options(headers: Iterable[tuple[str, str]]) -> PublishOptions:
    plain: dict[str, str] = {}
    forwards: list[tuple[str, str]] = []
    callback: list[tuple[str, str]] = []
    failure: list[tuple[str, str]] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name.startswith(FORWARD) and len(name) > len(FORWARD):
            forwards.append((canonical_header(raw_name[len(FORWARD) :]), value))
        elif name.startswith(CALLBACK):
            callback.append((name[len(CALLBACK) :], value))
        elif name.startswith(FAILURE_CALLBACK):
            failure.append((name[len(FAILURE_CALLBACK) :], value))
        else:
            plain[name] = value
    options = _parse_plain(plain)
    return replace(
        options,
        forward_headers=tuple(forwards),
        callback_options=_parse_callback(callback, "Upstash-Callback-"),
        failure_callback_options=_parse_callback(failure, "Upstash-Failure-Callback-"),
    )


def _parse_plain(h: dict[str, str]) -> PublishOptions:
    return PublishOptions(
        method=parse_method(h.get("upstash-method"), "Upstash-Method"),
        content_type=h.get("content-type"),
        retries=_default(parse_retries(h.get("upstash-retries"), "Upstash-Retries"), DEFAULT_RETRIES),
        retry_delay=parse_retry_delay_header(h.get("upstash-retry-delay"), "Upstash-Retry-Delay"),
        timeout_ms=_timeout(h.get("upstash-timeout"), "Upstash-Timeout"),
        delay_ms=_delay(h.get("upstash-delay"), "Upstash-Delay"),
        not_before_ms=_not_before(h.get("upstash-not-before")),
        callback=_url(h.get("upstash-callback"), "Upstash-Callback"),
        failure_callback=_url(h.get("upstash-failure-callback"), "Upstash-Failure-Callback"),
        deduplication_id=_non_empty(h.get("upstash-deduplication-id"), "Upstash-Deduplication-Id"),
        content_based_deduplication=_flag(h.get("upstash-content-based-deduplication")),
        flow_control=_flow_control(h.get("upstash-flow-control-key"), h.get("upstash-flow-control-value")),
        label=h.get("upstash-label"),
        redaction=_redaction(h.get("upstash-redact-fields")),
    )


def _parse_callback(headers: list[tuple[str, str]], prefix: str) -> CallbackOptions:
    if not headers:
        return NO_CALLBACK_OPTIONS
    options: dict[str, str] = {}
    forwards: list[tuple[str, str]] = []
    recorded: HeaderMap = {}
    for suffix, value in headers:
        if suffix.startswith("forward-") and len(suffix) > len("forward-"):
            name = canonical_header(suffix[len("forward-") :])
            forwards.append((name, value))
            recorded.setdefault(name, []).append(value)
        elif suffix in ("method", "retries", "retry-delay", "timeout", "delay"):
            options[suffix] = value
        else:
            recorded.setdefault(canonical_header(suffix), []).append(value)
    name = canonical_header(prefix)  # e.g. "Upstash-Callback-"
    return CallbackOptions(
        method=parse_method(options.get("method"), name + "Method"),
        retries=parse_retries(options.get("retries"), name + "Retries"),
        retry_delay=parse_retry_delay_header(options.get("retry-delay"), name + "Retry-Delay"),
        timeout_ms=_timeout(options.get("timeout"), name + "Timeout"),
        delay_ms=_delay(options.get("delay"), name + "Delay"),
        forward_headers=tuple(forwards),
        recorded=recorded,
    )


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def parse_method(value: str | None, header: str) -> HttpMethod:
    if value is None:
        return "POST"
    method = value.strip().upper()
    if method not in METHODS:
        raise BadHeader(header, f"{value!r} is not one of GET, POST, PUT, DELETE, PATCH")
    return cast(HttpMethod, method)


def parse_retries(value: str | None, header: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_RETRIES:
        raise BadHeader(header, f"{value!r} is not an integer from 0 to {MAX_RETRIES}")
    return int(text)


def parse_retry_delay_header(value: str | None, header: str) -> RetryDelayExpression | None:
    if value is None:
        return None
    try:
        return parse_retry_delay(value)
    except ExpressionError as exc:
        raise BadHeader(header, str(exc)) from exc


def _timeout(value: str | None, header: str) -> float | None:
    if value is None:
        return None
    timeout_ms = _duration(value, header)
    if timeout_ms <= 0:
        raise BadHeader(header, "must be longer than zero")
    return timeout_ms


def _delay(value: str | None, header: str) -> float:
    return 0.0 if value is None else _duration(value, header)


def _duration(value: str, header: str) -> float:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise BadHeader(header, str(exc)) from exc


def _not_before(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise BadHeader("Upstash-Not-Before", f"{value!r} is not a Unix time in seconds")
    return int(text) * 1000.0


def _url(value: str | None, header: str) -> str | None:
    if value is not None and not is_url(value.strip()):
        raise BadHeader(header, f"{value!r} is not an http:// or https:// URL")
    return None if value is None else value.strip()


def _non_empty(value: str | None, header: str) -> str | None:
    if value is not None and not value.strip():
        raise BadHeader(header, "is empty")
    return value


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    # The Python SDK sends str(bool): `True`/`False` (reference G16).
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise BadHeader("Upstash-Content-Based-Deduplication", f"{value!r} is not true or false")
    return lowered == "true"


def _flow_control(key: str | None, value: str | None) -> FlowControlSpec | None:
    if key is None:
        if value is not None:
            raise BadHeader("Upstash-Flow-Control-Key", "is required with Upstash-Flow-Control-Value")
        return None
    if not key.strip():
        raise BadHeader("Upstash-Flow-Control-Key", "is empty")
    try:
        return parse_flow_control(key.strip(), value or "")
    except ValueError as exc:
        raise BadHeader("Upstash-Flow-Control-Value", str(exc)) from exc


def _redaction(value: str | None) -> Redaction:
    if value is None:
        return NO_REDACTION
    body, all_headers, names = False, False, set()
    for part in (p.strip() for p in value.split(",")):
        lowered = part.lower()
        if lowered == "body":
            body = True
        elif lowered in ("header", "headers"):
            all_headers = True
        elif lowered.startswith("header[") and lowered.endswith("]") and len(lowered) > len("header[]"):
            names.add(lowered[len("header[") : -1])
        else:
            raise BadHeader("Upstash-Redact-Fields", f"unknown field {part!r} (body, header, header[Name])")
    return Redaction(body, all_headers, frozenset(names))
