"""Schedules as code: make QStash's schedules match the `schedule(...)` declarations.

    python -m shared schedules sync --dry-run     # print the difference, change nothing
    python -m shared schedules sync               # create, update and delete until they match

Each declaration becomes the QStash schedule of the same id: the job's URL (`job_url`), its retries and
per-attempt timeout, the dead-letter failure callback, the payload as a JSON body, and the cron with a
`CRON_TZ=<tz> ` prefix unless the zone is UTC (reference qstash.md §2; the emulator parses it alike).

**Which schedules are ours.** QStash's schedules are account-wide: a preview deployment, another app
or a person may have some. A schedule belongs to this project only if both hold:
- its destination is this deployment's jobs URL, `STASHKIT_PUBLIC_URL/api/jobs/<job>`, and
- it carries the forwarded header `Stashkit-Managed` that sync puts on every schedule it writes.
Only those are updated or deleted. A declared id that QStash holds for something else is a conflict:
reported, left alone, and the sync exits non-zero. A schedule left by an old `STASHKIT_PUBLIC_URL` is
not ours any more: delete it by hand after moving domains.

Idempotent: an update is sent only when a compared field differs, so a second sync changes nothing.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from shared.errors import InvalidInput, NotFound
from shared.jobs.publish import DLQ_CALLBACK_PATH, JOBS_PATH, TIMEOUT_MARGIN_S, job_url, settings
from shared.jobs.registry import Schedule, declared_schedules, get_job
from shared.qstash import get_qstash

if TYPE_CHECKING:
    from qstash.schedule import Schedule as QStashSchedule

MANAGED_HEADER = "Stashkit-Managed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Wanted:
    """What QStash should hold for one declaration, in the form QStash reports it back."""

    schedule_id: str
    destination: str
    cron: str
    body: str
    retries: int
    timeout_s: int
    failure_callback: str
    queue: str | None
    flow_control: tuple[str, int | None, int | None, int | None] | None  # key, parallelism, rate, period


@dataclass(slots=True)
class Plan:
    create: list[Wanted] = field(default_factory=list)
    update: list[tuple[Wanted, list[str]]] = field(default_factory=list)  # and what differs
    delete: list[tuple[str, str]] = field(default_factory=list)  # schedule id, destination
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def wanted(declared: Schedule) -> Wanted:
    if declared.tz != "UTC":
        try:  # here, at sync time on the developer's machine, not when a function imports the declaration
            zoneinfo.ZoneInfo(declared.tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(
                f"schedule {declared.schedule_id!r}: unknown time zone {declared.tz!r}", field="tz"
            ) from exc
    options = get_job(declared.job).options
    flow = options.flow_control
    return Wanted(
        schedule_id=declared.schedule_id,
        destination=job_url(declared.job),
        cron=declared.cron if declared.tz == "UTC" else f"CRON_TZ={declared.tz} {declared.cron}",
        body=msgspec.json.encode(declared.payload).decode(),
        retries=options.retries,
        timeout_s=math.ceil(options.timeout_s) + TIMEOUT_MARGIN_S,
        failure_callback=settings().require_public_url() + DLQ_CALLBACK_PATH,
        queue=options.queue,
        # QStash reports a period of 1 s when none was given (reference qstash.md §4).
        flow_control=(flow["key"], flow.get("parallelism"), flow.get("rate"), flow.get("period", 1)) if flow else None,
    )


def is_ours(existing: QStashSchedule) -> bool:
    prefix = settings().require_public_url() + JOBS_PATH
    marked = any(name.lower() == MANAGED_HEADER.lower() for name in (existing.headers or {}))
    return existing.destination.startswith(prefix) and marked


def differences(want: Wanted, have: QStashSchedule) -> list[str]:
    flow = have.flow_control
    reported = (flow.key, flow.parallelism, flow.rate, flow.period) if flow else None
    pairs: list[tuple[str, object, object]] = [
        ("destination", want.destination, have.destination),
        ("cron", want.cron, have.cron),
        ("body", want.body, have.body),
        ("retries", want.retries, have.retries),
        ("timeout", want.timeout_s, have.timeout),
        ("failure_callback", want.failure_callback, have.failure_callback),
        ("queue", want.queue, have.queue),
        ("flow_control", want.flow_control, reported),
    ]
    return [f"{name}: {old!r} -> {new!r}" for name, new, old in pairs if new != old]


def plan(declared: list[Schedule], existing: list[QStashSchedule]) -> Plan:
    result = Plan()
    held = {s.schedule_id: s for s in existing}
    for declaration in declared:
        try:
            want = wanted(declaration)
        except NotFound:
            result.conflicts.append(f"{declaration.schedule_id}: no job named {declaration.job!r} is registered")
            continue
        have = held.get(declaration.schedule_id)
        if have is None:
            result.create.append(want)
        elif not is_ours(have):
            result.conflicts.append(f"{want.schedule_id}: QStash holds it for something else ({have.destination})")
        elif changed := differences(want, have):
            result.update.append((want, changed))
        else:
            result.unchanged.append(want.schedule_id)
    names = {d.schedule_id for d in declared}
    result.delete = [(s.schedule_id, s.destination) for s in existing if s.schedule_id not in names and is_ours(s)]
    return result


def describe(result: Plan) -> list[str]:
    lines = [f"create    {w.schedule_id}  {w.cron!r} -> {w.destination}" for w in result.create]
    lines += [f"update    {w.schedule_id}  {'; '.join(changed)}" for w, changed in result.update]
    lines += [f"delete    {schedule_id}  ({destination})" for schedule_id, destination in result.delete]
    lines += [f"unchanged {schedule_id}" for schedule_id in result.unchanged]
    lines += [f"conflict  {text}" for text in result.conflicts]
    return lines


async def sync(*, dry_run: bool = False) -> Plan:
    """Compute the plan against QStash and, unless `dry_run`, carry it out."""
    client = get_qstash()
    result = plan(declared_schedules(), await client.schedule.list())
    if dry_run:
        return result
    for want in [*result.create, *(w for w, _ in result.update)]:
        await client.schedule.create(**_create_arguments(want))
    for schedule_id, _ in result.delete:
        await client.schedule.delete(schedule_id)
    return result


def _create_arguments(want: Wanted) -> dict[str, Any]:
    flow: dict[str, Any] | None = None
    if want.flow_control is not None:
        key, parallelism, rate, period = want.flow_control
        flow = {"key": key, "period": period}
        flow |= {"parallelism": parallelism} if parallelism is not None else {}
        flow |= {"rate": rate} if rate is not None else {}
    return {
        "destination": want.destination,
        "cron": want.cron,
        "body": want.body,
        "content_type": "application/json",
        "headers": {MANAGED_HEADER: "1"},
        "retries": want.retries,
        "timeout": want.timeout_s,
        "failure_callback": want.failure_callback,
        "schedule_id": want.schedule_id,
        "queue": want.queue,
        "flow_control": flow,
    }
