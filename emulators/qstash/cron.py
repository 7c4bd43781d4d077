"""Five-field cron with an optional `CRON_TZ=Zone` prefix, as `Upstash-Cron` takes it (reference §5.1).

Fields: minute hour day-of-month month day-of-week, each `*`, `?`, `n`, `a-b`, `*/s`, `a-b/s`, `a/s` or a
comma list of those; month and weekday names (JAN, MON) and weekday 7 for Sunday; the macros @yearly
@annually @monthly @weekly @daily @midnight @hourly. Day matching follows robfig/cron (the Go library
QStash's Go service is most likely built on) and Vixie cron: when both day fields are restricted a day
matching either fires, and a field counts as unrestricted only when it is `*` or `?` (so `*/2` restricts).

Local times that do not exist (the spring-forward gap) are skipped; repeated ones (fall-back) fire once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_WEEKDAYS = {d: i for i, d in enumerate(_WEEKDAY_NAMES)}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (low, high, names) per field, in order.
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 7, _WEEKDAYS),
)
# A schedule that cannot fire within this many days never will: Feb 29 can be 8 years away (2096 -> 2104),
# and every other day pattern recurs within a year.
_SEARCH_DAYS = 366 * 9


class CronError(ValueError):
    """The text is not a cron expression this server accepts."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    text: str
    zone: tzinfo
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def next_after_ms(self, after_ms: float) -> float | None:
        """The first tick strictly after `after_ms` (Unix ms, UTC), or None if it never fires."""
        start = datetime.fromtimestamp(after_ms / 1000, self.zone).replace(second=0, microsecond=0)
        first_day = start.date()
        for offset in range(_SEARCH_DAYS):
            day = first_day + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            found = self._first_time_on(day, after_ms)
            if found is not None:
                return found
        return None

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _first_time_on(self, day: date, after_ms: float) -> float | None:
        for hour in self.hours:
            for minute in self.minutes:
                local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                tick_ms = local.timestamp() * 1000
                if tick_ms <= after_ms or not _exists(local):
                    continue
                return tick_ms
        return None


def parse_cron(text: str) -> CronSchedule:
    zone, body = _split_zone(text.strip())
    body = _MACROS.get(body.lower(), body)
    fields = body.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    values = [_parse_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(v % 7 for v in values[4])
    return CronSchedule(
        text=text,
        zone=zone,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        days_restricted=fields[2] not in ("*", "?"),
        weekdays_restricted=fields[4] not in ("*", "?"),
    )


def _split_zone(text: str) -> tuple[tzinfo, str]:
    for prefix in ("CRON_TZ=", "TZ="):
        if text.startswith(prefix):
            name, _, rest = text[len(prefix) :].partition(" ")
            return _zone(name), rest.strip()
    return ZoneInfo("UTC"), text


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # ValueError: a malformed key such as ../x
        raise CronError(f"unknown time zone {name!r}") from exc


def _parse_field(field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in field.split(","):
        values.update(_parse_part(part, low, high, names))
    return values


def _parse_part(part: str, low: int, high: int, names: dict[str, int]) -> range:
    span, slash, step_text = part.partition("/")
    step = _number(step_text, names={}) if slash else 1
    if step < 1:
        raise CronError(f"step must be at least 1 in {part!r}")
    if span in ("*", "?"):
        start, end = low, high
    elif "-" in span:
        first, _, last = span.partition("-")
        start, end = _number(first, names), _number(last, names)
    else:
        start = _number(span, names)
        end = high if slash else start
    if not low <= start <= end <= high:
        raise CronError(f"{part!r} is outside {low}-{high}")
    return range(start, end + 1, step)


def _number(text: str, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not (text.isascii() and text.isdigit()):
        raise CronError(f"not a number: {text!r}")
    return int(text)


def _exists(local: datetime) -> bool:
    """False for a wall time inside a DST gap: converting it to UTC and back does not return it."""
    round_trip = datetime.fromtimestamp(local.timestamp(), local.tzinfo)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)
