"""`python -m emulators.redis_rest --port P --redis-url URL --token T [--readonly-token R] [--cluster] ...`"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from emulators.redis_rest import limits
from emulators.redis_rest.app import Gateway, Settings
from emulators.redis_rest.backend import Backend, Cluster, Limits, RedisAddress, SingleNode
from emulators.redis_rest.metrics import counters
from emulators.redis_rest.pubsub import PubSubHub
from emulators.redis_rest.shared import SharedCounters
from emulators.redis_rest.sse import StreamSettings
from emulators.redis_rest.tokens import Tokens
from emulators.redis_rest.workers import run_workers
from emulators.serve import configure_logging, serve

TOKEN_VAR = "STASHKIT_GATEWAY_TOKEN"
READONLY_TOKEN_VAR = "STASHKIT_GATEWAY_READONLY_TOKEN"


def _tokens(given: list[str] | None, variable: str) -> list[str]:
    return given if given else [t for t in [os.environ.get(variable, "")] if t]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.redis_rest",
        description="Upstash-REST-compatible gateway in front of redis-server or a Redis Cluster.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8079, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379",
        help="redis://[user:password@]host:port[/db] (default: %(default)s)",
    )
    parser.add_argument(
        "--token",
        action="append",
        help=f"read-write bearer token; repeat it to accept several while rotating (default: ${TOKEN_VAR})",
    )
    parser.add_argument(
        "--readonly-token",
        action="append",
        help=f"bearer token that runs read commands only; may repeat (default: ${READONLY_TOKEN_VAR}, else none)",
    )
    parser.add_argument(
        "--allow-admin",
        action="store_true",
        help="run every command redis-server knows, not only those Upstash supports (tests, local admin)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the URL is a node of a Redis Cluster: route every command by hash slot"
    )
    parser.add_argument("--base-path", default="/", help="path the REST API is mounted at (default: /)")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="Redis connections per node, hence concurrent requests (default: %(default)s)",
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up on a Redis reply after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--max-block",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest timeout a blocking command may ask for (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=10 * 1024 * 1024, help="largest request body accepted (default: 10 MiB)"
    )
    parser.add_argument(
        "--max-pipeline-commands",
        type=int,
        default=limits.MAX_PIPELINE_COMMANDS,
        help="most commands in one /pipeline or /multi-exec request (default: %(default)s)",
    )
    parser.add_argument(
        "--max-command-args",
        type=int,
        default=limits.MAX_COMMAND_ARGS,
        help="most arguments in one command, its name included (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=limits.REQUEST_TIMEOUT_S,
        metavar="SECONDS",
        help="answer 504 to a request not done after this long, body upload included (default: %(default)s)",
    )
    parser.add_argument(
        "--script-timeout",
        type=float,
        default=limits.SCRIPT_TIMEOUT_S,
        metavar="SECONDS",
        help="SCRIPT KILL a script running longer than this, and set Redis' lua-time-limit to it; "
        "0 leaves scripts alone (default: %(default)s)",
    )
    parser.add_argument(
        "--connection-close",
        action="store_true",
        help="answer `Connection: close`, so async SDK clients never reuse a connection "
        "across event loops (reference G10)",
    )
    parser.add_argument(
        "--sse-heartbeat",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="send a `: ping` comment on an idle subscription stream this often, so proxies keep it "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--sse-buffer",
        type=int,
        default=1000,
        metavar="MESSAGES",
        help="messages a subscriber may leave unread before its stream is closed (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-token",
        default=os.environ.get("STASHKIT_GATEWAY_METRICS_TOKEN"),
        help="a second token /__metrics accepts, for a scraper (default: $STASHKIT_GATEWAY_METRICS_TOKEN)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving the port (SO_REUSEPORT), counters shared; the gateway exits 1 if one dies "
        "(default: %(default)s)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    args.token = _tokens(args.token, TOKEN_VAR)
    args.readonly_token = _tokens(args.readonly_token, READONLY_TOKEN_VAR)
    if not args.token:
        parser.error(f"--token (or ${TOKEN_VAR}) is required")
    try:
        args.tokens = Tokens(args.token, args.readonly_token)
    except ValueError as exc:
        parser.error(f"--token/--readonly-token: {exc}")
    if args.max_block >= args.command_timeout:
        parser.error("--max-block must be shorter than --command-timeout")
    if args.sse_heartbeat <= 0:
        parser.error("--sse-heartbeat must be a positive number of seconds")
    if args.sse_buffer < 1:
        parser.error("--sse-buffer must be at least 1")
    if args.max_block >= args.request_timeout:
        parser.error("--max-block must be shorter than --request-timeout")
    for name in ("max_pipeline_commands", "max_command_args", "request_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.script_timeout < 0:
        parser.error("--script-timeout must be 0 (off) or positive")
    try:
        args.address = RedisAddress.parse(args.redis_url)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workers == 1:
        run_worker(args, None, None)
        return
    configure_logging()
    shared = counters(args.workers)

    def run(index: int, sock: socket.socket) -> None:
        shared.use_row(index)
        run_worker(args, shared, sock)

    sys.exit(run_workers(args.workers, args.host, args.port, run))


def run_worker(args: argparse.Namespace, shared: SharedCounters | None, sock: socket.socket | None) -> None:
    """One gateway process: its own Redis pools and pub/sub connection, counting into `shared`."""
    redis_limits = Limits(
        max_connections=args.max_connections,
        command_timeout_s=args.command_timeout,
        script_timeout_s=args.script_timeout,
    )
    backend: Backend = Cluster(args.address, redis_limits) if args.cluster else SingleNode(args.address, redis_limits)
    # Classic pub/sub is broadcast to every node of a Cluster, so the seed node serves subscribers.
    pubsub = PubSubHub(
        args.address.host,
        args.address.port,
        handshake=args.address.handshake(),
        connect_timeout_s=redis_limits.connect_timeout_s,
        timeout_s=redis_limits.command_timeout_s,
    )
    settings = Settings(
        tokens=args.tokens,
        base_path=args.base_path,
        max_body_bytes=args.max_body_bytes,
        max_block_s=args.max_block,
        connection_close=args.connection_close,
        streams=StreamSettings(heartbeat_s=args.sse_heartbeat, buffer_messages=args.sse_buffer),
        metrics_token=args.metrics_token,
        allow_admin=args.allow_admin,
        protected_users=(args.address.username,) if args.address.username else (),
        max_pipeline_commands=args.max_pipeline_commands,
        max_command_args=args.max_command_args,
        request_timeout_s=args.request_timeout,
        script_timeout_s=args.script_timeout,
    )
    gateway = Gateway(backend, settings, pubsub, shared)
    # Open subscription streams never end by themselves: end them when asked to stop, or the server
    # would wait for them forever before shutting down.
    serve(
        gateway,
        args.host,
        args.port,
        access_log=args.access_log,
        on_exit=lambda: pubsub.close_all("ERR the gateway is shutting down"),
        sock=sock,
    )


if __name__ == "__main__":
    main()
