"""How every local server here runs: uvicorn on uvloop and httptools, one worker, quiet by default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE

_TOKEN_PARAMETER = re.compile(r"([?&]_token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Upstash-style URLs may carry the token as `?_token=...`: the access log shows it as `***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "_token=" in a for a in record.args):
            record.args = tuple(_TOKEN_PARAMETER.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per outgoing request otherwise
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app when a signal asks it to stop (before it waits for open
    responses to finish: an endless one, like a subscription stream, must be ended by the app)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # a signal handler: hand the call to the event loop
            self._loop.call_soon_threadsafe(self._on_exit)


def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    on_exit: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run `app` until SIGINT/SIGTERM; `on_exit` is called (in the event loop) when one arrives.
    `sock`: an already listening socket to serve on, instead of binding host:port."""
    configure_logging()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info" if access_log else "warning",  # uvicorn logs access lines at INFO
        lifespan="on",
        # The peer is the caller: a local server has no proxy in front whose X-Forwarded-For it could
        # trust (uvicorn would otherwise take it from any loopback caller), so an address-keyed rate
        # limit behaves here as on a platform that vouches for the address (shared.http.client_ip).
        proxy_headers=False,
    )
    server = uvicorn.Server(config) if on_exit is None else _Server(config, on_exit)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=None if sock is None else [sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # e.g. the port is taken: as `uvicorn.run` does
