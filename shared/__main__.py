"""`python -m shared`: the library's command line, one module per command group (shared/cli/).

    python -m shared schedules sync [--dry-run]
    python -m shared dlq list [--job J] [--status S] [--since MS] [--until MS] [--limit N] [--cursor C]
    python -m shared dlq redrive ID [ID ...]  |  python -m shared dlq redrive --job J [--since MS] ...
    python -m shared dlq reconcile

Configured by the same environment as the functions (shared/config.py). Exit status: 0 done, 1 a
failure or a conflict (the message says which), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.cli import dlq, schedules
from shared.errors import StashkitError
from shared.qstash import close_qstash
from shared.redis import close_redis

GROUPS = (schedules, dlq)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description="stashkit's command line")
    groups = parser.add_subparsers(dest="group", required=True, metavar="{schedules,dlq}")
    for group in GROUPS:
        group.add_parser(groups)
    args = parser.parse_args(argv)
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    try:
        status: int = await args.run(args)
        return status
    except StashkitError as exc:  # a bug is not caught: its traceback is what a developer needs
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:  # the clients belong to this loop, which ends here
        await close_redis()
        await close_qstash()


if __name__ == "__main__":
    sys.exit(main())
