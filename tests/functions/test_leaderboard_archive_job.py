"""The built-in archive job end to end: enqueued through the QStash emulator, delivered signed to the jobs
function, it archives yesterday's window, which the leaderboards function then serves once it expired."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest

from shared import keys
from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.leaderboards.archive import LEADERBOARD_ARCHIVE
from shared.leaderboards.board import Leaderboard
from shared.leaderboards.boards import Board
from shared.redis import RedisClients
from tests.conftest import Gateway
from tests.functions.jobs_stack import JobsStack, start_jobs_stack

BOARD = f"arch-{uuid.uuid4().hex[:8]}"
SETTINGS = Board(periods=["daily"], archive_top=2, ratelimit=None)


@pytest.fixture(scope="module")
def stack(gateway: Gateway) -> Iterator[JobsStack]:
    handle = start_jobs_stack(gateway, STASHKIT_LEADERBOARDS=msgspec.json.encode({BOARD: SETTINGS}).decode())
    yield handle
    handle.stop()


@pytest.fixture
async def redis(gateway: Gateway) -> AsyncIterator[RedisClients]:
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=10)
    yield clients
    await clients.aclose()


async def test_the_archive_job_archives_yesterday_and_the_archive_is_served(
    stack: JobsStack, redis: RedisClients
) -> None:
    today = Leaderboard(BOARD, SETTINGS, redis=redis.get)
    yesterday = ManualClock(today.now_ms() - 86_400_000)
    earlier = Leaderboard(BOARD, SETTINGS, redis=redis.get, clock=yesterday)
    for i in range(4):
        await earlier.submit(f"m{i}", i, submission_id=uuid.uuid4().hex)
    window = earlier.window_id("daily")

    record = stack.wait_until_final(stack.enqueue(LEADERBOARD_ARCHIVE, None))
    assert record["state"] == "succeeded", record
    await redis.get().execute(["DEL", keys.leaderboard_entries(BOARD, "daily", window)])  # as if it expired

    page = stack.http.get(f"/api/leaderboards/{BOARD}", params={"period": "daily", "window": window})
    assert page.status_code == 200, page.text
    assert [(e["rank"], e["member"]) for e in page.json()["entries"]] == [(1, "m3"), (2, "m2")]
    gone = stack.http.get(f"/api/leaderboards/{BOARD}/members/m0", params={"period": "daily", "window": window})
    assert gone.status_code == 404  # below the archived top
