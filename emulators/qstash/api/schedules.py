"""Schedules: create (`POST /v2/schedules/{destination}` with `Upstash-Cron`), get, list, delete, and
pause/resume by PATCH (what the SDK sends) or POST (what the docs say) (reference §3, G18).

`POST /v2/schedules/{id}/pause` is told apart from a create for a URL ending in `/pause` by its single
path segment: a destination is a URL (with `//`) or a bare group name that cannot end in `/pause`.
"""

from __future__ import annotations

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.api.publish import destination_of, valid_name
from emulators.qstash.cron import CronError, parse_cron
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadHeader, NotFound
from emulators.qstash.model import PublishRequest, Schedule
from emulators.qstash.options import parse_publish_options
from emulators.qstash.wire_resources import schedule_json


def _schedule(emulator: Emulator, schedule_id: str) -> Schedule:
    schedule = emulator.store.schedules.get(schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule


def create_schedule(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    destination = destination_of(params.raw("destination"), request.query_string)
    cron_text = request.headers.get("upstash-cron")
    if cron_text is None:
        raise BadHeader("Upstash-Cron", "is required")
    try:
        cron = parse_cron(cron_text)
    except CronError as exc:
        raise BadHeader("Upstash-Cron", str(exc)) from exc
    if cron.next_after_ms(emulator.clock.now_ms()) is None:
        raise BadHeader("Upstash-Cron", f"{cron_text!r} never fires")
    schedule_id = request.headers.get("upstash-schedule-id")
    if schedule_id is not None:
        valid_name(schedule_id, "Upstash-Schedule-Id")
    queue = request.headers.get("upstash-queue-name")
    options = parse_publish_options(request.headers.items())
    template = PublishRequest(
        destination,
        request.body,
        options,
        request.client_ip,
        queue_name=None if queue is None else valid_name(queue, "Upstash-Queue-Name"),
    )
    schedule = emulator.scheduler.upsert(schedule_id, template, cron)
    return Reply(200, {"scheduleId": schedule.schedule_id})


def get_schedule(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    schedule = _schedule(emulator, params.text("id"))
    return Reply(200, schedule_json(schedule, emulator.scheduler.states(schedule)))


def list_schedules(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    schedules = emulator.store.schedules.values()
    return Reply(200, [schedule_json(s, emulator.scheduler.states(s)) for s in schedules])


def delete_schedule(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    del emulator.store.schedules[_schedule(emulator, params.text("id")).schedule_id]
    return Reply(200)


def pause_or_resume(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    _schedule(emulator, params.text("id")).paused = params.raw("action") == "pause"
    return Reply(200)


ROUTES = [
    Route.of("GET", r"/v2/schedules", list_schedules),
    Route.of("PATCH|POST", r"/v2/schedules/(?P<id>[^/:]+)/(?P<action>pause|resume)", pause_or_resume),
    Route.of("POST", r"/v2/schedules/(?P<destination>.+)", create_schedule),
    Route.of("GET", r"/v2/schedules/(?P<id>[^/]+)", get_schedule),
    Route.of("DELETE", r"/v2/schedules/(?P<id>[^/]+)", delete_schedule),
]
