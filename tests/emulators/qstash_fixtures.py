"""Fixtures for the QStash emulator; tests/conftest.py loads them as a plugin for the whole suite,
so the session-scoped servers are shared.

* `qstash_server`: the emulator as a real subprocess (`python -m emulators.qstash`) at time scale 0.001,
  so a 12 s backoff takes 12 ms. Tests that move its clock or rotate its keys start their own with
  `start_emulator(...)` instead, so the shared one keeps real time and the default keys.
* `destination`: a loopback HTTP server (uvicorn in a thread) that records every request and answers as
  a test tells it to: fail N times, answer 489, send Retry-After, be slow. Each test uses its own
  paths (`path` fixture), so recordings never mix.
* `qstash` / `aqstash`: fresh official SDK clients (sync / async) per test, closed afterwards; a fresh
  async client per test also sidesteps the event-loop trap of reference G10.

Test modules also import helpers from here, before pytest loads it as a plugin; the marker
PYTEST_DONT_REWRITE tells pytest that this module's asserts are not rewritten (it raises its own
AssertionErrors with messages), which silences the "already imported" warning.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from qstash import AsyncQStash, QStash, Receiver
from qstash.message import PublishResponse

from emulators.qstash.config import DEFAULT_CURRENT_SIGNING_KEY, DEFAULT_NEXT_SIGNING_KEY, DEFAULT_TOKEN
from tests.servers import Process, free_port, python_module

TOKEN = DEFAULT_TOKEN
CURRENT_KEY = DEFAULT_CURRENT_SIGNING_KEY
NEXT_KEY = DEFAULT_NEXT_SIGNING_KEY
TIME_SCALE = "0.001"
DEADLINE_S = 3.0

_unique = itertools.count()


# -- the emulator ---------------------------------------------------------------------------------


@dataclass
class EmulatorProcess:
    process: Process
    token: str = TOKEN
    # One client for raw calls: building an httpx.Client loads a TLS context, tens of ms each time.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5, trust_env=False))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    def client(self) -> QStash:
        return QStash(self.token, base_url=self.base_url, retry=False)

    def async_client(self) -> AsyncQStash:
        return AsyncQStash(self.token, base_url=self.base_url, retry=False)

    def call(self, method: str, path: str, authorize: bool = True, **kwargs: Any) -> httpx.Response:
        """A raw API call, with the token unless `authorize=False` (`headers=` may override it)."""
        headers = {"Authorization": f"Bearer {self.token}"} if authorize else {}
        headers.update(kwargs.pop("headers", {}))
        return self.http.request(method, self.base_url + path, headers=headers, **kwargs)

    def advance(self, seconds: float) -> dict[str, Any]:
        response = self.call("POST", "/__clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self.call("GET", "/__stats").json()
        return result

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def start_emulator(*args: str, token: str = TOKEN) -> EmulatorProcess:
    port = free_port()
    extra = list(args) if "--time-scale" in args else [*args, "--time-scale", TIME_SCALE]
    if token != TOKEN:
        extra += ["--token", token]
    return EmulatorProcess(python_module("emulators.qstash", port, *extra).start(), token)


@pytest.fixture(scope="session")
def qstash_server() -> Iterator[EmulatorProcess]:
    server = start_emulator()
    yield server
    server.stop()


@pytest.fixture
def qstash(qstash_server: EmulatorProcess) -> Iterator[QStash]:
    client = qstash_server.client()
    yield client
    client.http._client.close()  # the SDK offers no close(); its httpx client holds sockets


@pytest.fixture
async def aqstash(qstash_server: EmulatorProcess) -> AsyncIterator[AsyncQStash]:
    client = qstash_server.async_client()
    yield client
    await client.http._client.aclose()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(CURRENT_KEY, NEXT_KEY)


# -- the destination ------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float  # time.time() on arrival

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Behaviour:
    status: int = 200
    fail_times: int = 0  # answer `fail_status` to the first N requests
    fail_status: int = 500
    headers: dict[str, str] = field(default_factory=dict)  # sent with every failing answer
    body: bytes = b"ok"
    fail_body: bytes = b"failed"
    delay_s: float = 0.0
    served: int = 0
    active: int = 0
    max_active: int = 0


class Destination:
    """Records requests per path (without the query) and answers by the path's Behaviour."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._received: dict[str, list[Received]] = {}
        self._behaviours: dict[str, Behaviour] = {}
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> Destination:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the destination server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def behave(self, path: str, **settings: Any) -> Behaviour:
        behaviour = Behaviour(**settings)
        with self._lock:
            self._behaviours[path] = behaviour
        return behaviour

    def behaviour(self, path: str) -> Behaviour:
        with self._lock:
            return self._behaviours.setdefault(path, Behaviour())

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return list(self._received.get(path, []))

    def wait_for(self, path: str, count: int = 1, timeout_s: float = DEADLINE_S) -> list[Received]:
        wait_until(lambda: len(self.received(path)) >= count, timeout_s, f"{count} request(s) to {path}")
        return self.received(path)

    async def wait_for_async(self, path: str, count: int = 1, timeout_s: float = DEADLINE_S) -> list[Received]:
        await wait_until_async(lambda: len(self.received(path)) >= count, timeout_s, f"{count} request(s) to {path}")
        return self.received(path)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        path = scope["path"]
        record = Received(
            scope["method"],
            path + ("?" + query if query else ""),
            {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body,
            time.time(),
        )
        behaviour = self.behaviour(path)
        with self._lock:
            self._received.setdefault(path, []).append(record)
            behaviour.served += 1
            failing = behaviour.served <= behaviour.fail_times
            behaviour.active += 1
            behaviour.max_active = max(behaviour.max_active, behaviour.active)
        try:
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
        finally:
            with self._lock:
                behaviour.active -= 1
        await self._answer(send, behaviour, failing)

    async def _answer(self, send: Any, behaviour: Behaviour, failing: bool) -> None:
        status = behaviour.fail_status if failing else behaviour.status
        body = behaviour.fail_body if failing or status >= 300 else behaviour.body
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain")]
        if failing or status >= 300:
            headers += [(k.encode(), v.encode()) for k, v in behaviour.headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="session")
def destination() -> Iterator[Destination]:
    server = Destination().start()
    yield server
    server.stop()


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A destination path no other test uses."""
    return f"/{re.sub(r'[^A-Za-z0-9_-]+', '-', request.node.name).strip('-')}-{next(_unique)}"


def publish_one(client: QStash, url: str, as_json: bool = False, **options: Any) -> str:
    """Publish to one URL and return the message id (the SDK's result type is a union)."""
    publish = client.message.publish_json if as_json else client.message.publish
    result = publish(url=url, **options)
    assert isinstance(result, PublishResponse)
    return result.message_id


# -- waiting --------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout_s: float = DEADLINE_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.005)


async def wait_until_async(
    predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float = DEADLINE_S, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        outcome = predicate()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


def eventually[T](fetch: Callable[[], T], check: Callable[[T], bool], timeout_s: float = DEADLINE_S) -> T:
    """Call `fetch` until `check` accepts its result; the last result is returned (or the wait fails)."""
    holder: list[T] = []

    def ready() -> bool:
        holder[:] = [fetch()]
        return check(holder[0])

    wait_until(ready, timeout_s, "the expected result")
    return holder[0]
