"""The built-in job that archives each closed window's top entries (`stashkit.leaderboard_archive`).

It runs hourly, at five past (UTC): every board's windows close at a local midnight, which is on the
hour in UTC for every zone but a few with half- or quarter-hour offsets, so a window is archived within
the hour after it closes. Each run looks at every closed window still kept (`keep_windows`), so a run
that failed or was skipped is made up by the next; a window is archived once (the script refuses to
write an archive that exists), so overlapping runs are harmless. Archives stay readable after their
window expires (shared/leaderboards/board.py reads the archive then).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.jobs.registry import JobContext, job, schedule

if TYPE_CHECKING:  # the rest loads when the job runs: every function that runs jobs imports this module
    from shared.clock import Clock
    from shared.leaderboards.boards import Board
    from shared.redis import RedisProvider

LEADERBOARD_ARCHIVE = "stashkit.leaderboard_archive"


@schedule("5 * * * *", job=LEADERBOARD_ARCHIVE, schedule_id=LEADERBOARD_ARCHIVE)
@job(LEADERBOARD_ARCHIVE, retries=3, timeout_s=60)
async def leaderboard_archive(payload: Any, ctx: JobContext) -> None:
    from shared.leaderboards.boards import configured_boards

    await archive_closed_windows(configured_boards())


async def archive_closed_windows(
    boards: Mapping[str, Board], *, redis: RedisProvider | None = None, clock: Clock | None = None
) -> int:
    """Archive every closed, kept window of `boards` not archived yet; how many entries were archived.
    One script call (one round trip) per window."""
    from shared import keys
    from shared.leaderboards.board import Leaderboard
    from shared.leaderboards.script import ARCHIVE
    from shared.redis import get_redis

    redis = redis or get_redis
    archived = 0
    for name, board in boards.items():
        if board.archive_top == 0:
            continue
        leaderboard = Leaderboard(name, board, redis=redis, clock=clock)
        for period, window_id in leaderboard.closed_windows():
            script_keys = [keys.leaderboard_entries(name, period, window_id),
                           keys.leaderboard_archive(name, period, window_id),
                           keys.leaderboard_archive_index(name, period, window_id)]  # fmt: skip
            count = await ARCHIVE.run(redis(), script_keys, [board.order, board.archive_top])
            assert isinstance(count, int)
            archived += max(0, count)
    return archived
