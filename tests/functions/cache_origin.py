"""A local origin for the caching proxy's tests and benchmark: uvicorn in a thread, counting every call
by path, answering what the test configured for that path (status, headers, a delay).

The body names the path, the call number, the query and the Accept header, so a test can tell a cached
answer from a new one and one variant from another.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import free_port


@dataclass
class Behaviour:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"cache-control": "max-age=60"})
    delay_s: float = 0.0


class CountingOrigin:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(routes=[Route("/{path:path}", self._serve)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> CountingOrigin:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test origin did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def behave(self, path: str, **kwargs: object) -> None:
        self.behaviours[path] = Behaviour(**kwargs)  # type: ignore[arg-type]

    async def _serve(self, request: Request) -> Response:
        path = request.url.path
        with self._lock:
            self.calls[path] += 1
            call = self.calls[path]
        behaviour = self.behaviours.get(path, Behaviour())
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        body = f"{path} #{call} q={request.url.query} accept={request.headers.get('accept', '')}"
        headers = {"content-type": "text/plain", **behaviour.headers}
        return Response(body, behaviour.status, headers)
