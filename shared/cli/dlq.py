"""`python -m shared dlq list|redrive|reconcile`: the dead-letter API of functions/dlq.py, as JSON."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from shared.jobs.dlq import DeadLetters
from shared.jobs.dlq.model import STATUSES
from shared.jobs.dlq.wire import page_body, reconcile_body, redrive_body


def add_parser(groups: Any) -> None:
    group = groups.add_parser("dlq", help="dead letters: list, redrive, reconcile")
    commands = group.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="dead letters, newest first (JSON)")
    _filters(listing)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="the next_cursor of the previous page")
    listing.set_defaults(run=run_list)
    redrive = commands.add_parser("redrive", help="publish entries again, each once (by id, or by filter)")
    redrive.add_argument("ids", nargs="*", metavar="ID", help="entry ids; none: the dead entries the filter matches")
    _filters(redrive)
    redrive.add_argument("--limit", type=int, default=100, help="with a filter, at most this many")
    redrive.set_defaults(run=run_redrive)
    commands.add_parser("reconcile", help="record what QStash's DLQ holds and the store lacks").set_defaults(
        run=run_reconcile
    )


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job")
    parser.add_argument("--since", type=int, metavar="MS", help="failed at or after (epoch ms)")
    parser.add_argument("--until", type=int, metavar="MS", help="failed before (epoch ms)")


def _print(value: object) -> None:
    print(msgspec.json.encode(value).decode())


async def run_list(args: argparse.Namespace) -> int:
    page = await DeadLetters().list(job=args.job, since=args.since, until=args.until, status=args.status,
                                    cursor=args.cursor, limit=args.limit)  # fmt: skip
    _print(page_body(page))
    return 0


async def run_redrive(args: argparse.Namespace) -> int:
    ids = args.ids or None
    report = await DeadLetters().redrive_report(ids, job=args.job, since=args.since, until=args.until,
                                                limit=args.limit)  # fmt: skip
    _print(redrive_body(report))
    return 0


async def run_reconcile(args: argparse.Namespace) -> int:
    _print(reconcile_body(await DeadLetters().reconcile()))
    return 0
