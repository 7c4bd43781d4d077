"""Jobs declared as code: `@job` registers an async handler under a name, `schedule(...)` a cron tick of a
job. The jobs function (functions/jobs.py) runs what is registered here when QStash delivers it.

    @job("emails.send", retries=3, timeout_s=30)
    async def send_email(payload: dict, ctx: JobContext) -> None: ...

    message_id = await send_email.enqueue({"to": "a@b"}, delay_s=60)

    schedule("*/5 * * * *", job="reports.rollup", payload={}, schedule_id="rollup", tz="UTC")

Job modules are imported by `load_job_modules()`: the built-in ones, then those `STASHKIT_JOB_MODULES`
lists, so users add jobs without editing the library.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from shared.config import jobs_settings
from shared.errors import NotFound

BUILTIN_MODULES = ("shared.jobs.builtin", "shared.webhooks.record", "shared.leaderboards.archive")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
Singleton = Literal["skip", "retry"]


class FlowControl(TypedDict, total=False):
    """QStash flow control: at most `parallelism` deliveries at once and `rate` per `period` seconds,
    for every message with the same `key`."""

    key: str
    parallelism: int
    rate: int
    period: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """What a running job knows about its delivery."""

    job: str
    message_id: str
    attempt: int  # 1 for the first delivery
    max_retries: int
    schedule_id: str | None
    fencing_token: int | None  # the lock's token, for singleton jobs: carry it into every write
    deadline: float  # `time.monotonic()` value at which the run is cancelled

    def time_left_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


Handler = Callable[[Any, JobContext], Awaitable[object]]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    retries: int = 3
    timeout_s: float = 30.0
    queue: str | None = None
    flow_control: FlowControl | None = None
    singleton: Singleton | None = None  # None: runs may overlap; "skip" or "retry" an overlapping run


@dataclass(frozen=True, slots=True)
class Job:
    """A registered job: call `enqueue` to run it in the background through QStash."""

    name: str
    handler: Handler
    options: JobOptions

    async def enqueue(
        self,
        payload: Any,
        *,
        delay_s: float | None = None,
        not_before: float | None = None,
        dedup_id: str | None = None,
    ) -> str:
        """Publish one run of this job; returns QStash's message id (the status record's key).
        `not_before` is a Unix time in seconds; `dedup_id` makes QStash drop repeats for 10 minutes."""
        from shared.jobs.publish import enqueue  # the QStash SDK loads only for callers that publish

        return await enqueue(self, payload, delay_s=delay_s, not_before=not_before, dedup_id=dedup_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A cron tick of a job, owned by this project and kept in QStash by `python -m shared schedules sync`."""

    cron: str
    job: str
    payload: Any
    schedule_id: str
    tz: str = "UTC"


@dataclass
class Registry:
    jobs: dict[str, Job] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    loaded: bool = False


_registry = Registry()


def job(
    name: str,
    *,
    retries: int = 3,
    timeout_s: float = 30.0,
    queue: str | None = None,
    flow_control: FlowControl | None = None,
    singleton: bool | Singleton = False,
) -> Callable[[Handler], Job]:
    """Register the decorated `async def handler(payload, ctx)` as the job `name`."""
    if not _NAME.match(name):
        raise ValueError(f"a job name is 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    if not 0 <= retries <= 100:
        raise ValueError(f"retries must be between 0 and 100, got {retries}")
    if not 0 < timeout_s <= 900:
        raise ValueError(f"timeout_s must be above 0 and at most 900 (Lambda's limit), got {timeout_s}")
    if flow_control is not None and not flow_control.get("key"):
        raise ValueError("flow_control needs a `key`")
    options = JobOptions(
        retries=retries,
        timeout_s=timeout_s,
        queue=queue,
        flow_control=flow_control,
        singleton="skip" if singleton is True else (singleton or None),
    )

    def register(handler: Handler) -> Job:
        existing = _registry.jobs.get(name)
        if existing is not None and existing.handler is not handler:
            raise ValueError(f"two handlers are registered as the job {name!r}")
        registered = _registry.jobs[name] = Job(name, handler, options)
        return registered

    return register


def schedule[T](cron: str, *, job: str, payload: Any = None, schedule_id: str, tz: str = "UTC") -> Callable[[T], T]:
    """Declare a cron tick of `job` (5 fields, `tz` an IANA zone). Registered when called, so it works as
    a decorator (above `@job`, returning what it decorates unchanged) or as a plain call."""
    if not _NAME.match(schedule_id):
        raise ValueError(f"a schedule id is 1-64 letters, digits, '_', '.' or '-', got {schedule_id!r}")
    if len(cron.split()) != 5:
        raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {cron!r}")
    declared = Schedule(cron=cron, job=job, payload=payload, schedule_id=schedule_id, tz=tz)
    existing = _registry.schedules.get(schedule_id)
    if existing is not None and existing != declared:
        raise ValueError(f"the schedule id {schedule_id!r} is declared twice, differently")
    _registry.schedules[schedule_id] = declared

    def unchanged(target: T) -> T:
        return target

    return unchanged


def load_job_modules() -> None:
    """Import the built-in job modules and `STASHKIT_JOB_MODULES`, once per process."""
    if _registry.loaded:
        return
    for module in (*BUILTIN_MODULES, *jobs_settings().modules):
        importlib.import_module(module)
    _registry.loaded = True


def get_job(name: str) -> Job:
    load_job_modules()
    found = _registry.jobs.get(name)
    if found is None:
        raise NotFound(f"no job named {name!r}", field="name")
    return found


def registered_jobs() -> Mapping[str, Job]:
    load_job_modules()
    return dict(_registry.jobs)


def declared_schedules() -> list[Schedule]:
    load_job_modules()
    return sorted(_registry.schedules.values(), key=lambda s: s.schedule_id)
