"""How every local server here runs: uvicorn on uvloop and httptools, one worker, quiet by default."""

from __future__ import annotations

import logging

import uvicorn
from starlette.types import ASGIApp


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per outgoing request otherwise


def serve(app: ASGIApp, host: str, port: int, *, access_log: bool = False) -> None:
    configure_logging()
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="warning",
        lifespan="on",
        # The peer is the caller: a local server has no proxy in front whose X-Forwarded-For it could
        # trust (uvicorn would otherwise take it from any loopback caller), so an address-keyed rate
        # limit behaves here as on a platform that vouches for the address (shared.http.client_ip).
        proxy_headers=False,
    )
