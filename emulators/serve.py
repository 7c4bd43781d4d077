"""How every local server here runs: uvicorn on uvloop and httptools, one worker, quiet by default."""

from __future__ import annotations

import logging
import re

import uvicorn
from starlette.types import ASGIApp

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


def serve(app: ASGIApp, host: str, port: int, *, access_log: bool = False) -> None:
    configure_logging()
    uvicorn.run(
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
