"""Messages, DLQ entries, log events and publish results as the JSON the SDK parses (reference §3, §4).

Key names are exactly the ones the SDK reads; the required ones are always present (a missing one is
a KeyError in the SDK, G21). Redacted fields show as `REDACTED:<sha256>` (openapi
`Upstash-Redact-Fields`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Required, TypedDict, cast

from emulators.qstash.model import AttemptResult, Delivered, DlqEntry, LogEvent, Message
from emulators.qstash.options import HeaderMap, PublishOptions, Redaction


class PublishedJson(TypedDict, total=False):
    messageId: Required[str]
    url: str
    deduplicated: bool


class FlowControlFields(TypedDict, total=False):
    flowControlKey: str
    parallelism: int
    rate: int
    period: int


class MessageJson(FlowControlFields, total=False):
    messageId: Required[str]
    url: Required[str]
    method: Required[str]
    maxRetries: Required[int]
    notBefore: Required[int]
    createdAt: Required[int]
    topicName: str
    endpointName: str
    queueName: str
    body: str
    bodyBase64: str
    header: HeaderMap
    callbackHeader: HeaderMap
    failureCallbackHeader: HeaderMap
    callback: str
    failureCallback: str
    scheduleId: str
    callerIP: str
    retryDelayExpression: str
    label: str
    labels: list[str]
    timeout: int
    retried: int


class DlqMessageJson(MessageJson, total=False):
    dlqId: Required[str]
    responseStatus: Required[int]
    responseHeader: HeaderMap
    responseBody: str
    responseBodyBase64: str
    error: str


class LogEventJson(FlowControlFields, total=False):
    time: Required[int]
    messageId: Required[str]
    state: Required[str]
    url: Required[str]
    error: str
    nextDeliveryTime: int
    topicName: str
    endpointName: str
    queueName: str
    scheduleId: str
    header: HeaderMap
    callbackHeaders: HeaderMap  # plural here, singular in Message (reference G20)
    failureCallbackHeaders: HeaderMap
    body: str  # base64
    responseStatus: int
    responseHeader: HeaderMap
    responseBody: str  # base64
    timeout: int
    method: str
    callback: str
    failureCallback: str
    maxRetries: int
    retryDelayExpr: str  # not retryDelayExpression (reference G20)
    label: str
    labels: list[str]


def published_json(delivered: Delivered, with_url: bool, deduplicated: bool) -> PublishedJson:
    result: PublishedJson = {"messageId": delivered.message_id}
    if with_url:
        result["url"] = delivered.url
    if deduplicated:
        result["deduplicated"] = True
    return result


def redacted(data: bytes) -> str:
    return "REDACTED:" + hashlib.sha256(data).hexdigest()


def shown_headers(headers: HeaderMap, redaction: Redaction) -> HeaderMap:
    return {
        name: [redacted(v.encode()) for v in values] if redaction.hides_header(name) else list(values)
        for name, values in headers.items()
    }


def flow_control_fields(options: PublishOptions, into: FlowControlFields) -> None:
    spec = options.flow_control
    if spec is None:
        return
    into["flowControlKey"] = spec.key
    into["period"] = spec.period_s  # reported even when only rate or parallelism was set (reference §4)
    if spec.parallelism is not None:
        into["parallelism"] = spec.parallelism
    if spec.rate is not None:
        into["rate"] = spec.rate


def message_json(message: Message) -> MessageJson:
    options = message.options
    result: MessageJson = {
        "messageId": message.message_id,
        "url": message.url,
        "method": options.method,
        "maxRetries": options.retries,
        "notBefore": int(message.not_before_ms),
        "createdAt": int(message.created_ms),
        "callerIP": message.caller_ip,
        "retried": message.retried,
    }
    _headers_field(options, result)
    _body_fields(message.body, options.redaction, result)
    _optional(result, message)
    flow_control_fields(options, result)
    return result


def _headers_field(options: PublishOptions, into: MessageJson | LogEventJson) -> None:
    """`header` only when there are headers: QStash leaves empty optional fields out (issue #15)."""
    headers = options.forwarded_map()
    if headers:
        into["header"] = shown_headers(headers, options.redaction)


def _body_fields(body: bytes, redaction: Redaction, into: MessageJson) -> None:
    if not body:
        return  # left out, like every absent optional field
    if redaction.body:
        into["body"] = redacted(body)
        return
    try:
        into["body"] = body.decode()
    except UnicodeDecodeError:
        into["bodyBase64"] = base64.b64encode(body).decode()


def set_present(result: Mapping[str, object], pairs: Iterable[tuple[str, object | None]]) -> None:
    """Put each (key, value) whose value is not None into the JSON object `result`."""
    target = cast(dict[str, object], result)
    for key, value in pairs:
        if value is not None:
            target[key] = value


def label_fields(options: PublishOptions) -> tuple[tuple[str, object | None], ...]:
    """`label` is the first of the labels, `labels` all of them; both absent without a label."""
    labels = options.labels
    return (("label", labels[0]), ("labels", list(labels))) if labels else ()


def _message_fields(message: Message) -> tuple[tuple[str, object | None], ...]:
    """The optional fields a message and its log events both report (the retry expression's key differs)."""
    options = message.options
    return (
        ("topicName", message.topic_name),
        ("endpointName", message.endpoint_name),
        ("queueName", message.queue_name),
        ("scheduleId", message.schedule_id),
        ("callback", options.callback),
        ("failureCallback", options.failure_callback),
        *label_fields(options),
    )


def _optional(result: MessageJson, message: Message) -> None:
    options = message.options
    retry_delay = options.retry_delay.text if options.retry_delay else None
    set_present(result, (*_message_fields(message), ("retryDelayExpression", retry_delay)))
    if options.callback_options.recorded:
        result["callbackHeader"] = options.callback_options.recorded
    if options.failure_callback_options.recorded:
        result["failureCallbackHeader"] = options.failure_callback_options.recorded
    if options.timeout_ms is not None:
        result["timeout"] = int(options.timeout_ms // 1000)


def dlq_json(entry: DlqEntry) -> DlqMessageJson:
    result: DlqMessageJson = {
        **message_json(entry.message),  # type: ignore[typeddict-item]
        "dlqId": entry.dlq_id,
        "responseStatus": entry.response.status or 0,
        "responseHeader": entry.response.headers,
    }
    try:
        result["responseBody"] = entry.response.body.decode()
    except UnicodeDecodeError:
        result["responseBodyBase64"] = base64.b64encode(entry.response.body).decode()
    if entry.response.error is not None:
        result["error"] = entry.response.error
    return result


def event_json(event: LogEvent) -> LogEventJson:
    message, options = event.message, event.message.options
    result: LogEventJson = {
        "time": int(event.time_ms),
        "messageId": message.message_id,
        "state": event.state,
        "url": message.url,
        "method": options.method,
        "maxRetries": options.retries,
    }
    _headers_field(options, result)
    if message.body:
        result["body"] = redacted(message.body) if options.redaction.body else base64.b64encode(message.body).decode()
    _event_optional(result, event)
    flow_control_fields(options, result)
    if event.response is not None:
        _event_response(result, event.response)
    return result


def _event_optional(result: LogEventJson, event: LogEvent) -> None:
    message, options = event.message, event.message.options
    retry_delay = options.retry_delay.text if options.retry_delay else None
    set_present(result, (*_message_fields(message), ("retryDelayExpr", retry_delay), ("error", event.error)))
    if event.next_delivery_ms is not None:
        result["nextDeliveryTime"] = int(event.next_delivery_ms)
    if options.callback_options.recorded:
        result["callbackHeaders"] = options.callback_options.recorded
    if options.failure_callback_options.recorded:
        result["failureCallbackHeaders"] = options.failure_callback_options.recorded
    if options.timeout_ms is not None:
        result["timeout"] = int(options.timeout_ms)  # milliseconds in the events API (openapi LogEntry)


def _event_response(result: LogEventJson, response: AttemptResult) -> None:
    if response.status is not None:
        result["responseStatus"] = response.status
        result["responseHeader"] = response.headers
        result["responseBody"] = base64.b64encode(response.body).decode()
