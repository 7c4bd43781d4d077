"""`make dev`: the whole local stack on fixed ports, with the environment an app needs printed.

Starts a memory-only redis-server, the Upstash-REST gateway in front of it, the QStash emulator, and
every function on one port (routed as vercel.json routes them, wired to the gateway and the emulator).
The emulator delivers messages addressed to `--public-url` to the local functions (its `--route`),
so jobs published with production URLs reach them. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from emulators.qstash import config as qstash

ROOT = Path(__file__).resolve().parent.parent
DEV_REDIS_TOKEN = "stashkit-dev-token"  # a local-only credential, printed on purpose
DEV_READONLY_TOKEN = "stashkit-dev-readonly"  # likewise: the gateway's read-only token
DEV_ADMIN_TOKEN = "stashkit-dev-admin"  # likewise
DEV_RATELIMIT_TOKEN = "stashkit-dev-ratelimit"  # likewise: callers of /api/ratelimit present it


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    show_output: bool = False  # the functions' one-line-per-request JSON log is worth seeing


def redis_server() -> str:
    found = shutil.which("redis-server") or shutil.which("redis-server", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("no redis-server found: run `make setup` first")
    return found


def port_is_free(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until_listening(service: Service, host: str, proc: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{service.name} exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, service.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{service.name} did not listen on {host}:{service.port} within {timeout_s:.0f}s")


def environment(args: argparse.Namespace) -> dict[str, str]:
    """What an app (or the official SDKs) needs to use the local stack."""
    return {
        "UPSTASH_REDIS_REST_URL": f"http://{args.host}:{args.gateway_port}",
        "UPSTASH_REDIS_REST_TOKEN": DEV_REDIS_TOKEN,
        # Upstash's read-only token, under Upstash's and Vercel KV's names (shared.config reads both).
        "UPSTASH_REDIS_REST_READONLY_TOKEN": DEV_READONLY_TOKEN,
        "KV_REST_API_READ_ONLY_TOKEN": DEV_READONLY_TOKEN,
        "QSTASH_URL": f"http://{args.host}:{args.qstash_port}",
        "QSTASH_TOKEN": qstash.DEFAULT_TOKEN,
        "QSTASH_CURRENT_SIGNING_KEY": qstash.DEFAULT_CURRENT_SIGNING_KEY,
        "QSTASH_NEXT_SIGNING_KEY": qstash.DEFAULT_NEXT_SIGNING_KEY,
        "STASHKIT_ADMIN_TOKEN": DEV_ADMIN_TOKEN,
        "STASHKIT_RATELIMIT_TOKEN": DEV_RATELIMIT_TOKEN,
        "STASHKIT_PUBLIC_URL": args.public_url,  # what jobs are published to; the emulator routes it here
    }


def services(args: argparse.Namespace) -> list[Service]:
    python, host = sys.executable, args.host
    functions_url = f"http://{host}:{args.functions_port}"
    return [
        Service(
            "redis-server",
            [redis_server(), "--port", str(args.redis_port), "--bind", host, "--save", "", "--appendonly", "no"],
            args.redis_port,
        ),
        Service(
            "redis-rest gateway",
            [
                python,
                "-m",
                "emulators.redis_rest",
                "--host",
                host,
                "--port",
                str(args.gateway_port),
                "--token",
                DEV_REDIS_TOKEN,
                "--readonly-token",
                DEV_READONLY_TOKEN,
                "--redis-url",
                f"redis://{host}:{args.redis_port}",
                *(["--allow-admin"] if args.allow_admin else []),
            ],
            args.gateway_port,
        ),
        Service(
            "qstash emulator",
            [
                python,
                "-m",
                "emulators.qstash",
                "--host",
                host,
                "--port",
                str(args.qstash_port),
                "--route",
                f"{args.public_url}={functions_url}",
            ],
            args.qstash_port,
        ),
        Service(
            "functions",
            [python, "-m", "emulators.functions_server", "--host", host, "--port", str(args.functions_port)],
            args.functions_port,
            environment(args),
            show_output=True,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=int(os.environ.get("DEV_REDIS_PORT", "16379")))
    parser.add_argument("--gateway-port", type=int, default=int(os.environ.get("DEV_GATEWAY_PORT", "8079")))
    parser.add_argument("--qstash-port", type=int, default=int(os.environ.get("DEV_QSTASH_PORT", "8080")))
    parser.add_argument("--functions-port", type=int, default=int(os.environ.get("DEV_FUNCTIONS_PORT", "3000")))
    parser.add_argument(
        "--public-url",
        default=os.environ.get("DEV_PUBLIC_URL", "https://stashkit.example"),
        help="the deployed URL QStash messages name; delivered to the local functions",
    )
    parser.add_argument(
        "--allow-admin",
        action="store_true",
        default=os.environ.get("DEV_ALLOW_ADMIN", "") == "1",
        help="let the gateway run every redis-server command, not only Upstash's (default: off; DEV_ALLOW_ADMIN=1)",
    )
    args = parser.parse_args(argv)

    stack = services(args)
    busy = [f"{s.name} ({s.port})" for s in stack if not port_is_free(s.port, args.host)]
    if busy:
        raise SystemExit(f"ports in use: {', '.join(busy)}; free them or pick others (make dev ARGS=--help)")
    running: list[subprocess.Popen[bytes]] = []
    try:
        for service in stack:
            env = {**os.environ, **service.env}
            stdout = None if service.show_output else subprocess.DEVNULL
            proc = subprocess.Popen(service.argv, cwd=ROOT, env=env, stdout=stdout)  # noqa: S603
            running.append(proc)
            wait_until_listening(service, args.host, proc)
            print(f"  {service.name:<20} http://{args.host}:{service.port}")
        print(f"\nFunctions: http://{args.host}:{args.functions_port}/api/<name> (e.g. /api/health)")
        print(f"QStash delivers {args.public_url}/... to the local functions.")
        print("\nExport these to point an app (or the official SDKs) at the local stack:\n")
        for name, value in environment(args).items():
            print(f"export {name}={value}")
        if args.allow_admin:
            print(
                "\nWARNING: the gateway runs with --allow-admin: it runs every redis-server command "
                "(CONFIG SET, DEBUG, MODULE, ...), which Upstash refuses. Code that works here may fail there."
            )
        print("\nCtrl-C stops everything.", flush=True)
        # Blocked only now, so the children keep default signal handling.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(running):
            proc.terminate()
        for proc in running:
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
