"""Cron schedules: each tick publishes (or enqueues, with `Upstash-Queue-Name`) one message carrying
`Upstash-Schedule-Id` (reference §5.1). Ticks follow the emulator clock, so `POST /__clock/advance`
fires them without waiting real minutes.

When the clock jumps past several ticks, each one fires in order (as a server that was down and caught
up would), at most MAX_CATCH_UP_TICKS in a row; after that the schedule skips to the first tick after
now. A paused schedule skips its ticks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from emulators.qstash.clock import Clock
from emulators.qstash.cron import CronSchedule
from emulators.qstash.errors import ApiError
from emulators.qstash.model import PublishOutcome, PublishRequest, Schedule
from emulators.qstash.store import Store, new_id
from emulators.qstash.timeline import Due, Timeline

MAX_CATCH_UP_TICKS = 1000
ScheduleState = Literal["IN_PROGRESS", "SUCCESS", "FAIL"]  # the only values the SDK accepts (reference §4)


class Scheduler:
    def __init__(
        self, store: Store, clock: Clock, timeline: Timeline, publish: Callable[[PublishRequest], PublishOutcome]
    ) -> None:
        self._store = store
        self._clock = clock
        self._timeline = timeline
        self._publish = publish

    def upsert(self, schedule_id: str | None, template: PublishRequest, cron: CronSchedule) -> Schedule:
        """Create a schedule, or replace the settings of `schedule_id` if it exists (openapi)."""
        existing = self._store.schedules.get(schedule_id or "")
        schedule = Schedule(
            schedule_id=schedule_id or new_id("scd_"),
            destination=template.destination,
            cron=cron,
            body=template.body,
            options=template.options,
            queue_name=template.queue_name,
            created_ms=existing.created_ms if existing else self._clock.now_ms(),
            caller_ip=template.caller_ip,
            paused=existing.paused if existing else False,
        )
        self._store.schedules[schedule.schedule_id] = schedule
        self._arm(schedule, cron.next_after_ms(self._clock.now_ms()))
        return schedule

    def tick(self, due: Due) -> None:
        schedule = self._store.schedules.get(due.key)
        if schedule is None or schedule.next_tick_ms != due.due_ms:
            return  # deleted or re-timed since this entry was queued
        now_ms = self._clock.now_ms()
        if schedule.paused:
            self._arm(schedule, schedule.cron.next_after_ms(now_ms))
            return
        self._fire(schedule, due.due_ms)
        following = schedule.cron.next_after_ms(due.due_ms)
        if following is not None and following <= now_ms:
            schedule.late_ticks += 1
            if schedule.late_ticks >= MAX_CATCH_UP_TICKS:
                following, schedule.late_ticks = schedule.cron.next_after_ms(now_ms), 0
        else:
            schedule.late_ticks = 0
        self._arm(schedule, following)

    def states(self, schedule: Schedule) -> dict[str, ScheduleState]:
        """`lastScheduleStates`: each message of the last tick as IN_PROGRESS, SUCCESS or FAIL."""
        result: dict[str, ScheduleState] = {}
        for message_id in schedule.last_message_ids:
            message = self._store.messages.get(message_id)
            if message is None:
                continue
            if message.state == "DELIVERED":
                result[message_id] = "SUCCESS"
            elif message.finished:
                result[message_id] = "FAIL"
            else:
                result[message_id] = "IN_PROGRESS"
        return result

    def _fire(self, schedule: Schedule, tick_ms: float) -> None:
        request = PublishRequest(
            schedule.destination,
            schedule.body,
            schedule.options,
            schedule.caller_ip,
            queue_name=schedule.queue_name,
            schedule_id=schedule.schedule_id,
        )
        schedule.last_tick_ms = tick_ms
        try:
            outcome = self._publish(request)
        except ApiError as exc:  # e.g. its URL group was deleted: recorded, as the real `error` field
            schedule.error, schedule.last_message_ids = exc.message, ()
            return
        schedule.error = None
        schedule.last_message_ids = tuple(d.message_id for d in outcome.delivered)

    def _arm(self, schedule: Schedule, tick_ms: float | None) -> None:
        schedule.next_tick_ms = tick_ms
        if tick_ms is not None:
            self._timeline.add(Due("schedule", schedule.schedule_id, tick_ms))
