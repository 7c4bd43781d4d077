"""Leaderboards, declared in one place: JSON in `STASHKIT_LEADERBOARDS` (no boards when unset), validated
and documented by the msgspec types below; and their periods' windows.

    {"arena": {"order": "desc", "policy": "best", "min_score": 0, "max_score": 1000000000,
               "periods": ["daily", "weekly", "monthly"], "timezone": "UTC", "keep_windows": 8,
               "archive_top": 100, "ratelimit": "leaderboard_submit",
               "submit_keys": ["<bearer key for servers>"], "signing_secrets": ["<HMAC secret>"]}}

Every field has a default (the values above, with no periods and no keys): a board without keys or
secrets is read-only. Board names are 1-64 letters, digits, `_`, `.` or `-`.

Scores: numbers between -10^12 and 10^12, kept to a thousandth (a finer decimal is rounded half to even
to 3 places). Inside, a score is a whole number of thousandths below 2^53, so Lua's doubles add and
compare every one of them exactly, and ordering and tie-breaks are exact over the whole range.

Windows: `daily` is a local date (`2026-12-01`), `weekly` an ISO 8601 week (`2026-W49`: Monday to
Sunday, week 1 holds the year's first Thursday), `monthly` a month (`2026-12`), all in the board's
`timezone` (IANA), so a window's bounds follow its daylight-saving changes.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Literal

import msgspec

from shared.config import LEADERBOARDS_VAR, leaderboard_settings
from shared.errors import ConfigurationError, InvalidInput, NotFound

Order = Literal["desc", "asc"]
SubmitPolicy = Literal["best", "latest", "increment"]
Period = Literal["daily", "weekly", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly")
MAX_ABS_SCORE = 10**12
SCORE_UNITS = 1000  # thousandths: the resolution scores are kept at
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MEMBER_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
Score = Annotated[float, msgspec.Meta(ge=-MAX_ABS_SCORE, le=MAX_ABS_SCORE)]
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
_WINDOW = {"daily": re.compile(r"^\d{4}-\d{2}-\d{2}$"), "weekly": re.compile(r"^\d{4}-W\d{2}$"),
           "monthly": re.compile(r"^\d{4}-\d{2}$")}  # fmt: skip


class Board(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order: Order = "desc"
    policy: SubmitPolicy = "best"
    min_score: Score = 0
    max_score: Score = 1_000_000_000
    periods: Annotated[list[Period], msgspec.Meta(max_length=3)] = []
    timezone: str = "UTC"
    keep_windows: Annotated[int, msgspec.Meta(ge=1, le=366)] = 8  # closed windows kept live after closing
    archive_top: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 100  # entries archived per closed window
    ratelimit: str | None = "leaderboard_submit"  # a rate-limit policy, per member; null: no limit
    submit_keys: Annotated[list[Secret], msgspec.Meta(max_length=8)] = []
    signing_secrets: Annotated[list[Secret], msgspec.Meta(max_length=8)] = []

    def __post_init__(self) -> None:
        if self.min_score > self.max_score:
            raise ValueError("min_score is above max_score")
        if len(set(self.periods)) != len(self.periods):
            raise ValueError("periods are listed twice")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


def load_boards(source: str | None = None) -> dict[str, Board]:
    """Boards from JSON (`STASHKIT_LEADERBOARDS` when `source` is None); none when it is unset."""
    raw = leaderboard_settings().boards_json if source is None else source
    if raw is None:
        return {}
    try:
        return msgspec.json.decode(raw, type=dict[Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)], Board])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigurationError(LEADERBOARDS_VAR, f"is not a valid board map: {exc}") from exc


@functools.cache
def configured_boards() -> dict[str, Board]:
    """The process's boards, read from the environment once."""
    return load_boards()


def to_units(score: float, field: str = "score") -> int:
    """A score as whole thousandths (rounded half to even), checked against the exact range."""
    units = int(Decimal(repr(score)).scaleb(3).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if abs(units) > MAX_ABS_SCORE * SCORE_UNITS:
        raise InvalidInput(f"{field} must be between -{MAX_ABS_SCORE} and {MAX_ABS_SCORE}", field=field)
    return units


def from_units(units: int) -> int | float:
    """Whole scores come back as integers, others as floats of their thousandths."""
    return units // SCORE_UNITS if units % SCORE_UNITS == 0 else units / SCORE_UNITS


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    period: Period
    id: str  # `2026-12-01`, `2026-W49`, `2026-12`
    start: dt.date  # its first local day

    def shifted(self, windows: int) -> Window:
        """The window `windows` periods later (earlier when negative)."""
        if self.period == "daily":
            return window_on("daily", self.start + dt.timedelta(days=windows))
        if self.period == "weekly":
            return window_on("weekly", self.start + dt.timedelta(weeks=windows))
        month = self.start.year * 12 + self.start.month - 1 + windows
        return window_on("monthly", dt.date(month // 12, month % 12 + 1, 1))

    def end_ms(self, zone: zoneinfo.ZoneInfo) -> int:
        """When it closes: the next window's local midnight, in epoch ms."""
        start = self.shifted(1).start
        return int(dt.datetime(start.year, start.month, start.day, tzinfo=zone).timestamp() * 1000)


def window_on(period: Period, day: dt.date) -> Window:
    """The window of `period` holding the local date `day`."""
    if period == "daily":
        return Window(period=period, id=day.isoformat(), start=day)
    if period == "weekly":
        year, week, weekday = day.isocalendar()
        return Window(period=period, id=f"{year}-W{week:02d}", start=day - dt.timedelta(days=weekday - 1))
    return Window(period=period, id=f"{day.year}-{day.month:02d}", start=day.replace(day=1))


def window_at(period: Period, now_ms: int, zone: zoneinfo.ZoneInfo) -> Window:
    """The window of `period` that is open at `now_ms` in `zone`."""
    return window_on(period, dt.datetime.fromtimestamp(now_ms / 1000, zone).date())


def parse_window(period: Period, window_id: str) -> Window:
    """A window named in a request (`?window=`), checked to be a real date, week or month."""
    problem = InvalidInput(f"window must name a {period} window, like {_EXAMPLES[period]}", field="query.window")
    if not _WINDOW[period].match(window_id):
        raise problem
    try:
        if period == "daily":
            day = dt.date.fromisoformat(window_id)
        elif period == "weekly":
            day = dt.date.fromisocalendar(int(window_id[:4]), int(window_id[6:]), 1)
        else:
            day = dt.date(int(window_id[:4]), int(window_id[5:]), 1)
    except ValueError as exc:
        raise problem from exc
    return window_on(period, day)


_EXAMPLES = {"daily": "2026-12-01", "weekly": "2026-W49", "monthly": "2026-12"}


def get_board(name: str, boards: dict[str, Board] | None = None) -> Board:
    found = (configured_boards() if boards is None else boards).get(name)
    if found is None:
        raise NotFound(f"no leaderboard named {name!r}", field="path.board")
    return found
