"""`python -m emulators.qstash [--port 8080] [--host 127.0.0.1] [--token T] [--current-signing-key K1
--next-signing-key K2] [--time-scale F] [--route PREFIX=URL ...]`, or
`python -m emulators.qstash dev [-port P] ...`, the official binary's command line (dev.py).

Defaults are the official dev server's (`qstash dev`, reference §7.2), so an app configured for it
works unchanged.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from emulators.qstash import gc_policy
from emulators.qstash.app import QStashApp
from emulators.qstash.config import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
    EmulatorConfig,
)
from emulators.qstash.dev import announce_when_listening, parse_dev_args
from emulators.qstash.routing import Route, RouteTable
from emulators.serve import configure_logging, serve

log = logging.getLogger("emulators.qstash")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.qstash", description="A QStash-compatible local server (in memory)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--token", default=DEFAULT_TOKEN, help="bearer token callers must present (default: the dev server's)"
    )
    parser.add_argument(
        "--current-signing-key",
        default=DEFAULT_CURRENT_SIGNING_KEY,
        help="signs deliveries (default: the dev server's)",
    )
    parser.add_argument(
        "--next-signing-key",
        default=DEFAULT_NEXT_SIGNING_KEY,
        help="becomes current on rotation (default: the dev server's)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every delay, backoff, Retry-After and rate period by F, e.g. 0.001 (default: 1)",
    )
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="PREFIX=URL",
        help="deliver messages whose URL starts with PREFIX to URL instead (repeatable)",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=10 * 1024 * 1024, help="largest request body (default: 10 MiB)"
    )
    parser.add_argument(
        "--connection-close",
        action="store_true",
        help="answer `Connection: close`, so async SDK clients never reuse a connection across event loops (G10)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not math.isfinite(args.time_scale) or args.time_scale < 0:
        parser.error("--time-scale must be a finite number >= 0")
    if not args.token:
        parser.error("--token must not be empty")
    try:
        args.routes = RouteTable(tuple(Route.parse(r) for r in args.route))
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dev"]:  # the official binary's command line (dev.py)
        dev_args, rest = parse_dev_args(argv[1:])
        args = parse_args([*rest, "--port", str(dev_args.port)])
        announce_when_listening(args.host, args.port)
    else:
        args = parse_args(argv)
    run(args)


def run(args: argparse.Namespace) -> None:
    config = EmulatorConfig(
        token=args.token,
        current_signing_key=args.current_signing_key,
        next_signing_key=args.next_signing_key,
        time_scale=args.time_scale,
        routes=args.routes,
        max_body_bytes=args.max_body_bytes,
        connection_close=args.connection_close,
    )
    configure_logging()
    # "running at" is what the JS SDK's dev mode waits for (reference §7.1); no secret is printed.
    log.info("QStash emulator is running at http://%s:%d (time scale %g)", args.host, args.port, args.time_scale)
    gc_policy.install()
    serve(QStashApp(config), args.host, args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
