"""Queues, URL groups and schedules as the JSON the SDK parses (reference §4; all Queue keys required)."""

from __future__ import annotations

import base64
from typing import Required, TypedDict

from emulators.qstash.model import Queue, Schedule, UrlGroup
from emulators.qstash.options import HeaderMap
from emulators.qstash.scheduler import ScheduleState
from emulators.qstash.wire import (
    FlowControlFields,
    flow_control_fields,
    label_fields,
    redacted,
    set_present,
    shown_headers,
)


class QueueJson(TypedDict):
    name: str
    parallelism: int
    createdAt: int
    updatedAt: int
    lag: int
    paused: bool


class EndpointJson(TypedDict, total=False):
    url: Required[str]
    name: str


class UrlGroupJson(TypedDict):
    name: str
    createdAt: int
    updatedAt: int
    endpoints: list[EndpointJson]


class ScheduleJson(FlowControlFields, total=False):
    scheduleId: Required[str]
    destination: Required[str]
    cron: Required[str]
    createdAt: Required[int]
    method: Required[str]
    retries: Required[int]
    isPaused: Required[bool]
    body: str
    bodyBase64: str
    header: HeaderMap
    callbackHeader: HeaderMap
    failureCallbackHeader: HeaderMap
    callback: str
    failureCallback: str
    delay: int  # seconds
    timeout: int  # seconds
    callerIP: str
    queueName: str
    lastScheduleTime: int
    nextScheduleTime: int
    lastScheduleStates: dict[str, ScheduleState]
    error: str
    retryDelayExpression: str
    label: str
    labels: list[str]


def queue_json(queue: Queue, lag: int) -> QueueJson:
    return {
        "name": queue.name,
        "parallelism": queue.gate.parallelism or 1,
        "createdAt": int(queue.created_ms),
        "updatedAt": int(queue.updated_ms),
        "lag": lag,
        "paused": queue.gate.paused,
    }


def url_group_json(group: UrlGroup) -> UrlGroupJson:
    endpoints: list[EndpointJson] = []
    for endpoint in group.endpoints:
        item: EndpointJson = {"url": endpoint.url}
        if endpoint.name is not None:
            item["name"] = endpoint.name
        endpoints.append(item)
    return {
        "name": group.name,
        "createdAt": int(group.created_ms),
        "updatedAt": int(group.updated_ms),
        "endpoints": endpoints,
    }


def schedule_json(schedule: Schedule, states: dict[str, ScheduleState]) -> ScheduleJson:
    options = schedule.options
    result: ScheduleJson = {
        "scheduleId": schedule.schedule_id,
        "destination": schedule.destination,
        "cron": schedule.cron.text,
        "createdAt": int(schedule.created_ms),
        "method": options.method,
        "retries": options.retries,
        "isPaused": schedule.paused,
        "callerIP": schedule.caller_ip,
        "lastScheduleStates": states,  # the Python SDK requires it, even empty
    }
    headers = options.forwarded_map()
    if headers:
        result["header"] = shown_headers(headers, options.redaction)
    _schedule_body(result, schedule)
    _schedule_optional(result, schedule)
    flow_control_fields(options, result)
    return result


def _schedule_body(result: ScheduleJson, schedule: Schedule) -> None:
    if not schedule.body:
        return  # QStash leaves `body` out of a schedule created without one
    if schedule.options.redaction.body:
        result["body"] = redacted(schedule.body)
        return
    try:
        result["body"] = schedule.body.decode()
    except UnicodeDecodeError:
        result["bodyBase64"] = base64.b64encode(schedule.body).decode()


def _schedule_optional(result: ScheduleJson, schedule: Schedule) -> None:
    options = schedule.options
    pairs: tuple[tuple[str, str | None], ...] = (
        ("callback", options.callback),
        ("failureCallback", options.failure_callback),
        ("queueName", schedule.queue_name),
        ("error", schedule.error),
        ("retryDelayExpression", options.retry_delay.text if options.retry_delay else None),
    )
    set_present(result, (*pairs, *label_fields(options)))
    times: tuple[tuple[str, float | None], ...] = (
        ("lastScheduleTime", schedule.last_tick_ms),
        ("nextScheduleTime", schedule.next_tick_ms),
        ("delay", options.delay_ms / 1000 if options.delay_ms else None),
        ("timeout", options.timeout_ms / 1000 if options.timeout_ms is not None else None),
    )
    for key, number in times:
        if number is not None:
            result[key] = int(number)  # type: ignore[literal-required]
    if options.callback_options.recorded:
        result["callbackHeader"] = options.callback_options.recorded
    if options.failure_callback_options.recorded:
        result["failureCallbackHeader"] = options.failure_callback_options.recorded
