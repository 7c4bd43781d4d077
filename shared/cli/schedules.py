"""`python -m shared schedules sync [--dry-run]` (shared/jobs/schedules.py)."""

from __future__ import annotations

import argparse
from typing import Any

from shared.jobs.schedules import describe, sync


def add_parser(groups: Any) -> None:
    group = groups.add_parser("schedules", help="QStash schedules from the schedule(...) declarations")
    commands = group.add_subparsers(dest="command", required=True)
    command = commands.add_parser("sync", help="create, update and delete schedules until they match")
    command.add_argument("--dry-run", action="store_true", help="print the difference, change nothing")
    command.set_defaults(run=run_sync)


async def run_sync(args: argparse.Namespace) -> int:
    result = await sync(dry_run=args.dry_run)
    for line in describe(result):
        print(line)
    verb = "would change" if args.dry_run else "changed"
    print(
        f"{verb} {result.changes} schedule(s); {len(result.unchanged)} unchanged, {len(result.conflicts)} conflict(s)"
    )
    return 1 if result.conflicts else 0
