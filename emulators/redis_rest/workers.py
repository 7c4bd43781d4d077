"""`--workers N`: N gateway processes on one port, each with its own listening socket (SO_REUSEPORT).

Why SO_REUSEPORT rather than one socket shared by the workers (uvicorn's `--workers`): the kernel
spreads new connections evenly over the workers' sockets, where workers sharing one socket race for
each accept and one of them often takes most keep-alive connections; and our parent can create the
counters every worker shares (shared.py) before it forks them, which uvicorn's spawned workers cannot
inherit. The parent binds the port without listening (so it is held, and taken ports fail at once)
and forks the workers; it serves nothing itself.

A worker that dies is not restarted: the gateway stops the others and exits 1, so a supervisor (or a
test) sees it, instead of a gateway silently serving at reduced capacity.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import wait
from types import FrameType

log = logging.getLogger("emulators.redis_rest")

STOP_GRACE_S = 10.0  # a worker still running this long after SIGTERM is killed
_BACKLOG = 2048


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(run: Callable[[int, socket.socket], None], index: int, host: str, port: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own once serving
    run(index, listening_socket(host, port))


def run_workers(count: int, host: str, port: int, run: Callable[[int, socket.socket], None]) -> int:
    """Fork `count` workers, each calling `run(index, its listening socket)`; the exit status: 0 once
    SIGTERM/SIGINT stopped them all, 1 if one died by itself, 3 if the port cannot be bound."""
    try:
        held = listening_socket(host, port, listen=False)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 3  # uvicorn's STARTUP_FAILURE
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    context = multiprocessing.get_context("fork")  # the shared counters are inherited, not pickled
    workers = [
        context.Process(target=_worker, args=(run, index, host, port), name=f"gateway-worker-{index}")
        for index in range(count)
    ]
    status = 0
    try:
        for worker in workers:
            worker.start()
        while not stopping:
            if wait([w.sentinel for w in workers], timeout=0.2) and not stopping:
                dead = next(w for w in workers if not w.is_alive())
                log.error("gateway worker %s exited with %s: stopping the gateway", dead.name, dead.exitcode)
                status = 1
                break
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(STOP_GRACE_S)
            if worker.is_alive():
                worker.kill()
                worker.join()
        held.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
