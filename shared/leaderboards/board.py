"""Leaderboard operations, each one script call (one round trip):

    board = Leaderboard("arena", configured_boards()["arena"])
    result = await board.submit("alice", 1200, submission_id="s-1", data={"level": 3})
    page = await board.page(period="weekly", limit=10)                 # top 10 of this ISO week
    page = await board.page(cursor=page.next_cursor)                   # and the next 10
    view = await board.member("alice", around=5)                       # rank, score and neighbours
    await board.count(), await board.score_range(100, 200), await board.remove("cheater")

Ranks are 1-based positions; equal scores rank by who reached the score first (shared/leaderboards/
script.py). Which window is open is decided by the injected clock, else this process's wall clock:
a window is a key, named before the script runs, so Redis TIME cannot choose it without a second round
trip; a platform clock (NTP-synced) is off by milliseconds at a boundary, not by a window.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from shared import keys
from shared.clock import Clock, RedisClock
from shared.errors import InvalidInput, NotFound
from shared.leaderboards.boards import (
    MEMBER_PATTERN,
    Board,
    from_units,
    parse_window,
    to_units,
    window_at,
)
from shared.leaderboards.script import ENTRY_PREFIX_CHARS, MEMBER, READ, REMOVE, SUBMIT, UNITS_OFFSET
from shared.redis import RedisProvider, get_redis

PeriodOrAll = Literal["all", "daily", "weekly", "monthly"]
MAX_DATA_BYTES = 1024
MAX_PAGE = 1000
MAX_AROUND = 100
_MEMBER = re.compile(MEMBER_PATTERN)
_SUBMISSION = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_ENTRY = re.compile(r"^\d{32}:[A-Za-z0-9_.:@-]{1,128}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """Where a submission left the member in one period's window."""

    period: PeriodOrAll
    window: str
    member: str
    score: int | float  # the score kept (the policy's choice), not necessarily the one submitted
    rank: int
    improved: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    member: str
    replayed: bool  # the submission id was seen before: this is the original result, nothing changed
    standings: list[Standing]


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    rank: int
    member: str
    score: int | float
    data: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    board: str
    period: PeriodOrAll
    window: str
    entries: list[Entry]
    total: int  # entries in the window (or in the score range)
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberView:
    member: str
    rank: int
    score: int | float
    data: Any
    around: list[Entry]


class Leaderboard:
    """One declared board. `redis` gives the client for the running loop; `clock` decides which windows
    are open (a `ManualClock` in tests; by default this process's wall clock)."""

    def __init__(
        self, name: str, board: Board, *, redis: RedisProvider = get_redis, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.board = board
        self._redis = redis
        self._clock = clock or RedisClock()

    def now_ms(self) -> int:
        fixed = self._clock.script_now_ms()
        return fixed if fixed is not None else int(time.time() * 1000)

    async def submit(self, member: str, score: float, *, submission_id: str, data: Any = None) -> Submission:
        check_member(member)
        if not _SUBMISSION.match(submission_id):
            raise InvalidInput(
                "submission_id must be 1-128 letters, digits, '_', '.', ':' or '-'", field="body.submission_id"
            )
        units = self._checked_units(score)
        encoded = b"" if data is None else msgspec.json.encode(data)
        if len(encoded) > MAX_DATA_BYTES:
            raise InvalidInput(f"data must encode to at most {MAX_DATA_BYTES} bytes of JSON", field="body.data")
        windows = self._open_windows()
        script_keys = [
            keys.leaderboard_submission(self.name, submission_id),
            keys.leaderboard_data(self.name),
            keys.leaderboard_sequence(self.name),
        ]
        expiries: list[int] = []
        for period, window_id, expire_at in windows:
            script_keys += [
                keys.leaderboard_entries(self.name, period, window_id),
                keys.leaderboard_index(self.name, period, window_id),
            ]
            expiries.append(expire_at)
        args: list[str | int | float] = [
            self.board.order,
            member,
            units,
            self.board.policy,
            to_units(self.board.min_score),
            to_units(self.board.max_score),
            encoded.decode(),
            keys.LEADERBOARD_SUBMISSION_TTL_S * 1000,
            *expiries,
            *(f"{period}/{window_id}" for period, window_id, _ in windows),
        ]
        raw = await SUBMIT.run(self._redis(), script_keys, args)
        assert isinstance(raw, list)
        status, payload = raw
        if int(status) == 2:
            bounds = f"between {self.board.min_score} and {self.board.max_score}"
            raise InvalidInput(f"the score kept would not be {bounds}", field="body.score")
        standings = [
            Standing(
                period=label.split("/", 1)[0],
                window=label.split("/", 1)[1],
                member=member,
                score=from_units(int(kept)),
                rank=rank,
                improved=bool(improved),
            )
            for kept, rank, improved, label in msgspec.json.decode(payload)
        ]
        return Submission(member=member, replayed=int(status) == 1, standings=standings)

    async def page(
        self,
        *,
        period: PeriodOrAll = "all",
        window: str | None = None,
        limit: int = 10,
        offset: int = 0,
        cursor: str | None = None,
    ) -> Page:
        """Entries in rank order from `offset`, or after `cursor` (a page's `next_cursor`): a cursor names
        the last entry shown, so the next page starts right after it however ranks above it moved."""
        _check_limit(limit)
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="query.offset")
        if cursor is not None:
            raw = await self._read(period, window, ["after", _decode_cursor(cursor), "", limit + 1, 0])
        else:
            raw = await self._read(period, window, ["offset", offset, "", limit + 1, 0])
        return self._page(period, window, raw, limit)

    async def score_range(
        self,
        min_score: float,
        max_score: float,
        *,
        period: PeriodOrAll = "all",
        window: str | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> Page:
        """Entries whose score lies in [min_score, max_score], in rank order; `total` counts them all."""
        _check_limit(limit)
        low, high = to_units(min_score, "query.min_score"), to_units(max_score, "query.max_score")
        if low > high:
            raise InvalidInput("min_score is above max_score", field="query.min_score")
        # Every entry whose score key lies in [first, last]: its bytes start with a key in that range, so it
        # sorts after the bare digits of `first` and before those of `last + 1`.
        first, last = sorted((self._score_key(low), self._score_key(high)))
        bounds = [f"[{_digits(first)}", f"({_digits(last + 1)}"]
        raw = await self._read(period, window, ["range", bounds[0], bounds[1], limit + 1, offset])
        return self._page(period, window, raw, limit)

    async def count(self, *, period: PeriodOrAll = "all", window: str | None = None) -> int:
        raw = await self._read(period, window, ["count", 0, "", 0, 0])
        return int(raw[3])

    async def member(
        self, member: str, *, period: PeriodOrAll = "all", window: str | None = None, around: int = 0
    ) -> MemberView:
        check_member(member)
        if not 0 <= around <= MAX_AROUND:
            raise InvalidInput(f"around must be between 0 and {MAX_AROUND}", field="query.around")
        period, window_id = self._window(period, window)
        raw = await MEMBER.run(
            self._redis(),
            [
                keys.leaderboard_entries(self.name, period, window_id),
                keys.leaderboard_index(self.name, period, window_id),
                keys.leaderboard_archive(self.name, period, window_id),
                keys.leaderboard_archive_index(self.name, period, window_id),
                keys.leaderboard_data(self.name),
            ],
            [self.board.order, member, around],
        )
        if raw is None:
            raise NotFound(f"{member!r} has no score on {self.name!r} ({period} {window_id})", field="path.member")
        assert isinstance(raw, list)
        first, entries, data = raw
        listed = self._entries(int(first), entries, data)
        own = next(entry for entry in listed if entry.member == member)
        return MemberView(member=member, rank=own.rank, score=own.score, data=own.data, around=listed)

    async def remove(self, member: str) -> int:
        """Remove `member` from every period's live windows and their archives (cheater removal), and its
        data; how many windows held it."""
        check_member(member)
        script_keys = [keys.leaderboard_data(self.name)]
        for period, window_id in self.live_windows():
            script_keys += [
                keys.leaderboard_entries(self.name, period, window_id),
                keys.leaderboard_index(self.name, period, window_id),
                keys.leaderboard_archive(self.name, period, window_id),
                keys.leaderboard_archive_index(self.name, period, window_id),
            ]
        removed = await REMOVE.run(self._redis(), script_keys, [self.board.order, member])
        assert isinstance(removed, int)
        return removed

    def live_windows(self) -> list[tuple[PeriodOrAll, str]]:
        """All-time, and every period's open window and the closed ones still kept."""
        return [("all", "all"), *((w[0], w[1]) for w in self._open_windows()[1:]), *self.closed_windows()]

    def closed_windows(self) -> list[tuple[PeriodOrAll, str]]:
        """Every period's closed windows still kept (`keep_windows` of them), newest first."""
        now_ms = self.now_ms()
        found: list[tuple[PeriodOrAll, str]] = []
        for period in self.board.periods:
            current = window_at(period, now_ms, self.board.zone)
            found += [(period, current.shifted(-back).id) for back in range(1, self.board.keep_windows + 1)]
        return found

    def _open_windows(self) -> list[tuple[PeriodOrAll, str, int]]:
        now_ms = self.now_ms()
        found: list[tuple[PeriodOrAll, str, int]] = [("all", "all", 0)]
        for period in self.board.periods:
            current = window_at(period, now_ms, self.board.zone)
            found.append((period, current.id, current.shifted(self.board.keep_windows).end_ms(self.board.zone)))
        return found

    def window_id(self, period: PeriodOrAll, window: str | None = None) -> str:
        """The window a read of `period` and `window` would read (the open one when `window` is None)."""
        return self._window(period, window)[1]

    def _window(self, period: PeriodOrAll, window: str | None) -> tuple[PeriodOrAll, str]:
        if period == "all":
            if window not in (None, "all"):
                raise InvalidInput("the all-time board has one window, `all`", field="query.window")
            return "all", "all"
        if period not in self.board.periods:
            raise InvalidInput(f"{self.name!r} keeps no {period} windows", field="query.period")
        if window is None:
            return period, window_at(period, self.now_ms(), self.board.zone).id
        return period, parse_window(period, window).id

    async def _read(self, period: PeriodOrAll, window: str | None, args: list[str | int | float]) -> list[Any]:
        period, window_id = self._window(period, window)
        script_keys = [
            keys.leaderboard_entries(self.name, period, window_id),
            keys.leaderboard_archive(self.name, period, window_id),
            keys.leaderboard_data(self.name),
        ]
        raw = await READ.run(self._redis(), script_keys, [self.board.order, *args])
        assert isinstance(raw, list)
        return [period, window_id, *raw]

    def _page(self, period: PeriodOrAll, window: str | None, raw: list[Any], limit: int) -> Page:
        period_used, window_id, _live, total, first, entries, data = raw
        listed = self._entries(int(first), entries[:limit], data[:limit])
        more = len(entries) > limit
        return Page(
            board=self.name,
            period=period_used,
            window=window_id,
            entries=listed,
            total=int(total),
            next_cursor=_encode_cursor(entries[limit - 1]) if more and limit else None,
        )

    def _entries(self, first: int, entries: list[str], data: list[str | None]) -> list[Entry]:
        return [
            Entry(
                rank=first + i,
                member=entry[ENTRY_PREFIX_CHARS:],
                score=self._score(entry),
                data=None if blob is None else msgspec.json.decode(blob),
            )
            for i, (entry, blob) in enumerate(zip(entries, data, strict=True))
        ]

    def _score(self, entry: str) -> int | float:
        key = int(entry[:16])
        return from_units(UNITS_OFFSET - key if self.board.order == "desc" else key - UNITS_OFFSET)

    def _score_key(self, units: int) -> int:
        return UNITS_OFFSET - units if self.board.order == "desc" else units + UNITS_OFFSET

    def _checked_units(self, score: float) -> int:
        units = to_units(score, "body.score")
        if self.board.policy != "increment" and not to_units(self.board.min_score) <= units <= to_units(
            self.board.max_score
        ):
            raise InvalidInput(
                f"score must be between {self.board.min_score} and {self.board.max_score}", field="body.score"
            )
        return units


def check_member(member: str) -> None:
    if not _MEMBER.match(member):
        raise InvalidInput("a member id is 1-128 letters, digits, '_', '.', ':', '@' or '-'", field="path.member")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="query.limit")


def _digits(key: int) -> str:
    return f"{key:016d}"


def _encode_cursor(entry: str) -> str:
    return base64.urlsafe_b64encode(entry.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        entry = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor is not one this service issued", field="query.cursor") from exc
    if not _ENTRY.match(entry):
        raise InvalidInput("cursor is not one this service issued", field="query.cursor")
    return entry
