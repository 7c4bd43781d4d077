"""Leaderboards against the real gateway and Redis (single node and Cluster): ordering and ties, policies,
bounds, idempotent replays, paging, periods and their rollover under a clock the test moves, archives.

Each test has a board of its own (a unique name, so its own hash tag)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.clock import ManualClock
from shared.errors import InvalidInput, NotFound
from shared.leaderboards.archive import archive_closed_windows
from shared.leaderboards.board import Leaderboard
from shared.leaderboards.boards import Board, parse_window, to_units, window_at
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients


def at_ms(text: str) -> int:
    """Epoch ms of an ISO time (with its offset)."""
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


@pytest.fixture
async def redis(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(any_gateway, timeout_s=10) as clients:
        yield clients


def board(redis: RedisClients, clock: ManualClock | None = None, **fields: Any) -> Leaderboard:
    return Leaderboard(f"b-{uuid.uuid4().hex[:10]}", Board(**fields), redis=redis.get, clock=clock)


def sid() -> str:
    return uuid.uuid4().hex


async def ranking(lb: Leaderboard, **query: Any) -> list[tuple[int, str, float]]:
    page = await lb.page(limit=100, **query)
    return [(e.rank, e.member, e.score) for e in page.entries]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_equal_scores_rank_by_who_reached_them_first(redis: RedisClients, order: str) -> None:
    lb = board(redis, order=order)
    for member, score in [("carol", 50), ("alice", 70), ("bob", 50), ("dave", 90), ("erin", 70)]:
        await lb.submit(member, score, submission_id=sid())
    expected = [("dave", 90), ("alice", 70), ("erin", 70), ("carol", 50), ("bob", 50)]
    if order == "asc":
        expected = [("carol", 50), ("bob", 50), ("alice", 70), ("erin", 70), ("dave", 90)]
    assert await ranking(lb) == [(i + 1, m, s) for i, (m, s) in enumerate(expected)]


async def test_best_keeps_the_better_score_and_its_first_time(redis: RedisClients) -> None:
    lb = board(redis)
    await lb.submit("alice", 100, submission_id=sid())
    await lb.submit("bob", 100, submission_id=sid())
    worse = await lb.submit("alice", 10, submission_id=sid())
    same = await lb.submit("alice", 100, submission_id=sid())
    assert (worse.standings[0].score, worse.standings[0].improved) == (100, False)
    assert (same.standings[0].rank, same.standings[0].improved) == (1, False)  # still first to reach 100
    better = await lb.submit("bob", 101, submission_id=sid())
    assert (better.standings[0].rank, better.standings[0].improved) == (1, True)


async def test_best_on_an_ascending_board_keeps_the_lowest(redis: RedisClients) -> None:
    lb = board(redis, order="asc", min_score=0)
    await lb.submit("runner", 61.5, submission_id=sid())
    kept = await lb.submit("runner", 63, submission_id=sid())
    assert kept.standings[0].score == 61.5
    assert (await lb.submit("runner", 59.25, submission_id=sid())).standings[0].score == 59.25


async def test_latest_keeps_the_last_score_even_a_worse_one(redis: RedisClients) -> None:
    lb = board(redis, policy="latest")
    await lb.submit("alice", 100, submission_id=sid())
    result = await lb.submit("alice", 10, submission_id=sid())
    assert (result.standings[0].score, result.standings[0].improved) == (10, False)


async def test_increment_adds_and_refuses_a_total_out_of_bounds(redis: RedisClients) -> None:
    lb = board(redis, policy="increment", min_score=0, max_score=100)
    await lb.submit("alice", 60, submission_id=sid())
    assert (await lb.submit("alice", 30, submission_id=sid())).standings[0].score == 90
    with pytest.raises(InvalidInput):
        await lb.submit("alice", 20, submission_id=sid())
    assert (await lb.member("alice")).score == 90


async def test_scores_outside_the_bounds_change_nothing(redis: RedisClients) -> None:
    lb = board(redis, min_score=0, max_score=1000)
    for score in (-1, 1000.5, 10**13):
        with pytest.raises(InvalidInput):
            await lb.submit("alice", score, submission_id=sid())
    assert await lb.count() == 0


async def test_integer_scores_to_a_trillion_are_exact_and_decimals_keep_thousandths(redis: RedisClients) -> None:
    lb = board(redis, min_score=-(10**12), max_score=10**12)
    await lb.submit("top", 10**12, submission_id=sid())
    await lb.submit("next", 10**12 - 1, submission_id=sid())
    await lb.submit("low", -(10**12), submission_id=sid())
    await lb.submit("fine", 0.0015, submission_id=sid())  # rounded half to even: 0.002
    assert await ranking(lb) == [(1, "top", 10**12), (2, "next", 10**12 - 1), (3, "fine", 0.002),
                                 (4, "low", -(10**12))]  # fmt: skip
    assert to_units(0.0025) == 2


async def test_a_replayed_submission_returns_the_original_and_changes_nothing(redis: RedisClients) -> None:
    lb = board(redis, policy="increment")
    first = await lb.submit("alice", 5, submission_id="s-1", data={"level": 1})
    again = await lb.submit("alice", 5, submission_id="s-1", data={"level": 2})
    assert again.replayed and not first.replayed
    assert again.standings == first.standings
    view = await lb.member("alice")
    assert (view.score, view.data) == (5, {"level": 1})


async def test_member_view_has_rank_score_data_and_neighbours(redis: RedisClients) -> None:
    lb = board(redis)
    for i in range(10):
        await lb.submit(f"m{i}", i * 10, submission_id=sid(), data={"i": i})
    view = await lb.member("m5", around=2)
    assert (view.rank, view.score, view.data) == (5, 50, {"i": 5})
    assert [(e.rank, e.member) for e in view.around] == [(3, "m7"), (4, "m6"), (5, "m5"), (6, "m4"), (7, "m3")]
    top = await lb.member("m9", around=2)
    assert [e.rank for e in top.around] == [1, 2, 3]
    with pytest.raises(NotFound):
        await lb.member("nobody")


async def test_score_range_and_count(redis: RedisClients) -> None:
    for order in ("desc", "asc"):
        lb = board(redis, order=order)
        for i in range(10):
            await lb.submit(f"m{i}", i, submission_id=sid())
        page = await lb.score_range(3, 6, limit=10)
        expected = [6, 5, 4, 3] if order == "desc" else [3, 4, 5, 6]
        assert [e.score for e in page.entries] == expected and page.total == 4
        assert page.entries[0].rank == 4
        assert await lb.count() == 10


async def test_cursor_pages_skip_and_repeat_no_member_while_others_move(redis: RedisClients) -> None:
    lb = board(redis, policy="latest")
    for i in range(30):
        await lb.submit(f"m{i:02d}", 1000 - i, submission_id=sid())
    seen: list[str] = []
    movers = iter(range(100))

    async def move() -> None:  # a new member jumps above every entry still to come
        await lb.submit(f"new{next(movers)}", 5000, submission_id=sid())

    page = await lb.page(limit=7)
    while True:
        seen += [e.member for e in page.entries]
        if page.next_cursor is None:
            break
        page, *_ = await asyncio.gather(lb.page(limit=7, cursor=page.next_cursor), move(), move())
    assert seen == [f"m{i:02d}" for i in range(30)]


async def test_offset_paging_ranks_are_positions(redis: RedisClients) -> None:
    lb = board(redis)
    for i in range(12):
        await lb.submit(f"m{i}", i, submission_id=sid())
    page = await lb.page(offset=10, limit=5)
    assert [(e.rank, e.member) for e in page.entries] == [(11, "m1"), (12, "m0")] and page.next_cursor is None


async def test_windows_roll_over_at_local_midnight_iso_weeks_and_month_ends(redis: RedisClients) -> None:
    zone = "America/New_York"
    clock = ManualClock(at_ms("2026-11-30T23:59:00-05:00"))  # Monday of ISO week 49, the last of November
    lb = board(redis, clock, periods=["daily", "weekly", "monthly"], timezone=zone)
    before = await lb.submit("alice", 10, submission_id=sid())
    assert [(s.period, s.window) for s in before.standings] == [
        ("all", "all"), ("daily", "2026-11-30"), ("weekly", "2026-W49"), ("monthly", "2026-11")]  # fmt: skip
    clock.advance(120)  # 00:01 on December 1st in New York, still 05:01 UTC: a new day and month
    after = await lb.submit("bob", 5, submission_id=sid())
    assert [(s.window, s.rank) for s in after.standings] == [("all", 2), ("2026-12-01", 1), ("2026-W49", 2),
                                                            ("2026-12", 1)]  # fmt: skip
    assert await ranking(lb, period="daily", window="2026-11-30") == [(1, "alice", 10)]
    clock.now_ms = at_ms("2027-01-03T23:59:59-05:00")  # Sunday: 2027-01-03 is still in ISO week 2026-W53
    assert window_at("weekly", clock.now_ms, lb.board.zone).id == "2026-W53"
    clock.advance(1)
    assert window_at("weekly", clock.now_ms, lb.board.zone).id == "2027-W01"


async def test_closed_windows_expire_after_keep_windows(redis: RedisClients) -> None:
    clock = ManualClock(at_ms("2026-12-01T12:00:00+00:00"))
    lb = board(redis, clock, periods=["daily"], keep_windows=2)
    await lb.submit("alice", 1, submission_id=sid())
    ttl_ms = await redis.get().execute(["PEXPIRETIME", f"stashkit:{{lb:{lb.name}}}:z:daily:2026-12-01"])
    assert ttl_ms == at_ms("2026-12-04T00:00:00+00:00")  # it closes on the 2nd, kept for two more days


async def test_the_archive_job_keeps_the_top_of_each_closed_window(redis: RedisClients) -> None:
    clock = ManualClock(at_ms("2026-12-01T12:00:00+00:00"))
    lb = board(redis, clock, periods=["daily"], archive_top=3, keep_windows=1)
    for i in range(5):
        await lb.submit(f"m{i}", i, submission_id=sid(), data={"i": i})
    assert await archive_closed_windows({lb.name: lb.board}, redis=redis.get, clock=clock) == 0  # still open
    clock.advance(86_400)
    assert await archive_closed_windows({lb.name: lb.board}, redis=redis.get, clock=clock) == 3
    assert await archive_closed_windows({lb.name: lb.board}, redis=redis.get, clock=clock) == 0  # once only
    await redis.get().execute(["DEL", f"stashkit:{{lb:{lb.name}}}:z:daily:2026-12-01"])  # as if expired
    assert await ranking(lb, period="daily", window="2026-12-01") == [(1, "m4", 4), (2, "m3", 3), (3, "m2", 2)]
    view = await lb.member("m3", period="daily", window="2026-12-01")
    assert (view.rank, view.data) == (2, {"i": 3})


async def test_remove_takes_a_member_out_of_every_window_and_archive(redis: RedisClients) -> None:
    clock = ManualClock(at_ms("2026-12-01T12:00:00+00:00"))
    lb = board(redis, clock, periods=["daily", "monthly"])
    await lb.submit("cheater", 999, submission_id=sid(), data={"x": 1})
    await lb.submit("honest", 5, submission_id=sid())
    clock.advance(86_400)
    await archive_closed_windows({lb.name: lb.board}, redis=redis.get, clock=clock)
    assert await lb.remove("cheater") == 4  # all-time, daily (live and archived), monthly
    for period, window in [("all", None), ("daily", "2026-12-01"), ("monthly", None)]:
        assert [e.member for e in (await lb.page(period=period, window=window)).entries] == ["honest"]  # type: ignore[arg-type]


async def test_invalid_names_windows_and_cursors_are_refused(redis: RedisClients) -> None:
    lb = board(redis, periods=["weekly"])
    for member in ("", "a b", "x" * 129, "é"):
        with pytest.raises(InvalidInput):
            await lb.submit(member, 1, submission_id=sid())
    for call in (
        lb.page(period="daily"),
        lb.page(period="weekly", window="2026-W54"),
        lb.page(period="all", window="2026-12"),
        lb.page(cursor="not-a-cursor"),
        lb.submit("a", 1, submission_id="bad id"),
    ):
        with pytest.raises(InvalidInput):
            await call
    assert parse_window("weekly", "2026-W53").id == "2026-W53"


def test_a_daylight_saving_day_closes_at_local_midnight() -> None:
    zone = Board(timezone="America/New_York").zone
    spring = window_at("daily", at_ms("2026-03-08T12:00:00-04:00"), zone)  # clocks went forward at 02:00
    assert spring.end_ms(zone) == at_ms("2026-03-09T00:00:00-04:00")
    assert spring.end_ms(zone) - spring.shifted(-1).end_ms(zone) == 23 * 3_600_000
    assert window_at("monthly", at_ms("2026-12-31T23:59:59-05:00"), zone).shifted(1).id == "2027-01"
    with pytest.raises(InvalidInput):
        parse_window("weekly", "2027-W53")  # 2027 has 52 ISO weeks


async def test_a_replay_after_rollover_names_the_windows_it_was_written_to(redis: RedisClients) -> None:
    clock = ManualClock(at_ms("2026-12-01T23:59:00+00:00"))
    lb = board(redis, clock, periods=["daily"])
    first = await lb.submit("alice", 7, submission_id="s-1")
    clock.advance(120)
    again = await lb.submit("alice", 7, submission_id="s-1")
    assert again.replayed and again.standings == first.standings
    assert [s.window for s in again.standings] == ["all", "2026-12-01"]
    assert await lb.count(period="daily") == 0  # nothing written to the new day
