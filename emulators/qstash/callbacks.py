"""Callback and failure-callback messages (reference §5.5, upstash/docs qstash/features/callbacks.mdx).

After each attempt a callback message is published to `Upstash-Callback` with the attempt's response;
once retries run out, a failure-callback message goes to `Upstash-Failure-Callback` with the same body
plus `dlqId`. Both are ordinary signed messages (`sub` = the callback URL) that inherit the source's
retry settings unless `Upstash-Callback-Retries` / `-Retry-Delay` say otherwise.
"""

from __future__ import annotations

import base64
import json
from typing import NotRequired, TypedDict

from emulators.qstash.model import AttemptResult, Message
from emulators.qstash.options import CallbackOptions, HeaderMap, PublishOptions


class CallbackBody(TypedDict):
    status: int  # 0 when the attempt got no HTTP response (see `error`)
    header: HeaderMap
    body: str  # base64 of the response body
    retried: int
    maxRetries: int
    sourceMessageId: str
    url: str
    method: str
    sourceHeader: HeaderMap
    sourceBody: str  # base64 of the message body
    notBefore: str  # milliseconds, as a string in the documented example
    createdAt: str
    callerIP: str
    topicName: NotRequired[str]
    endpointName: NotRequired[str]
    scheduleId: NotRequired[str]
    dlqId: NotRequired[str]
    error: NotRequired[str]


def callback_body(message: Message, result: AttemptResult, dlq_id: str | None = None) -> bytes:
    body: CallbackBody = {
        "status": result.status or 0,
        "header": result.headers,
        "body": base64.b64encode(result.body).decode(),
        "retried": message.retried,
        "maxRetries": message.options.retries,
        "sourceMessageId": message.message_id,
        "url": message.url,
        "method": message.options.method,
        "sourceHeader": message.options.forwarded_map(),
        "sourceBody": base64.b64encode(message.body).decode(),
        "notBefore": str(int(message.not_before_ms)),
        "createdAt": str(int(message.created_ms)),
        "callerIP": message.caller_ip,
    }
    if message.topic_name is not None:
        body["topicName"] = message.topic_name
    if message.endpoint_name is not None:
        body["endpointName"] = message.endpoint_name
    if message.schedule_id is not None:
        body["scheduleId"] = message.schedule_id
    if dlq_id is not None:
        body["dlqId"] = dlq_id
    if result.error is not None:
        body["error"] = result.error
    return json.dumps(body).encode()


def callback_options(source: PublishOptions, callback: CallbackOptions) -> PublishOptions:
    return PublishOptions(
        method=callback.method,
        content_type="application/json",
        forward_headers=callback.forward_headers,
        retries=source.retries if callback.retries is None else callback.retries,
        retry_delay=callback.retry_delay or source.retry_delay,
        timeout_ms=callback.timeout_ms,
        delay_ms=callback.delay_ms,
    )
