"""Where one gateway request's time goes: the gateway under cProfile, driven like bench/gateway.py.

    .venv/bin/python bench/gateway_profile.py [--requests N] [--top K] [--sort tottime|cumulative]

Starts its own redis-server and one gateway worker run by `python -m cProfile`, sends GET and SET
(base64 mode) from 64 keep-alive connections, stops the gateway (SIGTERM; the profile is written on the way
out) and prints the top functions with their share of one request's time. cProfile slows
the gateway about 2x; the shares are what count.
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import tempfile
from functools import partial
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.gateway import TOKEN, drive, post, send_ok
from bench.http_client import HttpConnection
from tests.servers import Process, free_port, redis_server

# uvicorn raises the stopping signal again once it has shut down: a no-op handler lets cProfile write.
PROFILED = """
import cProfile, signal, sys
from emulators.redis_rest.__main__ import main
signal.signal(signal.SIGTERM, lambda *_: None)
profile = cProfile.Profile()
profile.enable()
try:
    main(sys.argv[1:])
finally:
    profile.disable()
    profile.dump_stats({out!r})
"""


async def load(port: int, requests: int) -> int:
    connections = [await HttpConnection.open(port) for _ in range(64)]
    sent = 0
    for args in (["GET", "bench:key"], ["SET", "bench:key", "x" * 100]):
        raws = [post(c, "/", json.dumps(args).encode()) for c in connections]
        result = await drive(
            "profile",
            [partial(send_ok, c, raw) for c, raw in zip(connections, raws, strict=True)],
            requests,
        )
        sent += result.requests
    for c in connections:
        c.close()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=12800, help="calls per operation (default: 12800)")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default: 25)")
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--output", help="keep the raw profile here (default: a temporary file)")
    args = parser.parse_args()
    out = args.output or str(Path(tempfile.mkdtemp(prefix="gateway-profile-")) / "gateway.prof")
    node = redis_server().start()
    port = free_port()
    argv = [sys.executable, "-c", PROFILED.format(out=out), "--port", str(port)]
    gateway = Process([*argv, "--redis-url", f"redis://127.0.0.1:{node.port}", "--token", TOKEN], port).start()
    try:
        sent = uvloop.run(load(port, args.requests))
    finally:
        gateway.stop()
        node.stop()
    stats = pstats.Stats(out)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n{sent} requests, {total:.2f} s of profiled CPU, {total / sent * 1e6:.1f} us per request (under cProfile)")
    print(f"{'tottime %':>10}{'cumtime %':>10}{'us/request':>11}  function")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2 if args.sort == "tottime" else 3], reverse=True)  # type: ignore[attr-defined]
    for (file, line, name), (_, _, tottime, cumtime, _) in rows[: args.top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"{100 * tottime / total:>9.1f}%{100 * cumtime / total:>9.1f}%"
            f"{tottime / sent * 1e6:>11.2f}  {name} ({where})"
        )
    print(f"\nraw profile: {out}")


if __name__ == "__main__":
    main()
