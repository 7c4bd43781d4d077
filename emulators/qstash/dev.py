"""`python -m emulators.qstash dev [-port P] [-log-port P] [-quota payg|pro] [emulator options]`: a
drop-in for the official `qstash dev` binary (reference §7.1), which the SDKs' dev mode would download.

It takes the binary's flags in Go's spellings (`-port 8080`, `--port=8080`; defaults from
`QSTASH_DEV_PORT`, `QSTASH_DEV_LOG_PORT`, `QSTASH_DEV_QUOTA`), always runs with the dev server's default
user (the JS SDK's dev mode accepts a running server only if `GET /v2/keys` answers those keys, §7.3),
and prints the binary's banner on **stdout** once the port accepts connections: the JS SDK waits for
"running at" there (spelled "runnning" by the binary; its regex takes any number of n's). The log
server (`-log-port`) and plan quotas (`-quota`) are accepted for compatibility and not served.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping

from emulators.qstash.config import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
)

QUOTAS = ("payg", "pro")


def _env_port(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = env.get(name)
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"qstash dev: {name} must be a port number, got {value!r}")
    return int(value)


def parse_dev_args(argv: list[str], env: Mapping[str, str] = os.environ) -> tuple[argparse.Namespace, list[str]]:
    """The binary's flags, and the rest (this emulator's own options, e.g. `--time-scale`)."""
    parser = argparse.ArgumentParser(
        prog="qstash dev",
        description="The QStash emulator as a stand-in for the official dev server.",
        allow_abbrev=False,
    )
    port = _env_port(env, "QSTASH_DEV_PORT", DEFAULT_PORT)
    parser.add_argument("-port", "--port", type=int, default=port, help="API port (default: %(default)s)")
    parser.add_argument(
        "-log-port", "--log-port", type=int, default=_env_port(env, "QSTASH_DEV_LOG_PORT", None), help="not served"
    )
    parser.add_argument("-quota", "--quota", choices=QUOTAS, default=env.get("QSTASH_DEV_QUOTA") or "payg")
    dev, rest = parser.parse_known_args(argv)
    if not 0 < dev.port < 65536:
        parser.error("-port must be a port number")
    if dev.quota not in QUOTAS:
        parser.error(f"QSTASH_DEV_QUOTA must be one of {', '.join(QUOTAS)}")
    credentials = ("--token", "--current-signing-key", "--next-signing-key")
    if any(arg.split("=")[0] in credentials for arg in rest):
        parser.error("dev mode always uses the dev server's default user (the SDKs' dev mode expects its keys)")
    return dev, rest


def banner(host: str, port: int) -> str:
    """The binary's startup text, credentials included (public test credentials, reference §7.2)."""
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    return "\n".join(
        (
            f"Upstash QStash development server is runnning at http://{shown}:{port}",
            "",
            "A default user has been created for you to authorize your requests.",
            f"QSTASH_TOKEN={DEFAULT_TOKEN}",
            f"QSTASH_CURRENT_SIGNING_KEY={DEFAULT_CURRENT_SIGNING_KEY}",
            f"QSTASH_NEXT_SIGNING_KEY={DEFAULT_NEXT_SIGNING_KEY}",
            "",
        )
    )


def announce_when_listening(host: str, port: int, timeout_s: float = 60.0) -> threading.Thread:
    """Print the banner once `host:port` accepts a connection (uvicorn binds after startup, so the
    banner never promises a server that is not there yet)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    def wait_then_print() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((target, port), timeout=1):
                    break
            except OSError:
                time.sleep(0.02)
        else:
            return
        sys.stdout.write(banner(host, port) + "\n")
        sys.stdout.flush()

    thread = threading.Thread(target=wait_then_print, name="qstash-dev-banner", daemon=True)
    thread.start()
    return thread
