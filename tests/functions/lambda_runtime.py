"""A Lambda execution environment on this machine: the Runtime API (2018-06-01) on loopback, and a cold
`python3.12` running AWS's runtime client (awslambdaric) for one handler against it.

    with lambda_runtime(task_root, ric_dir, "health", variables, log) as (api, runtime):
        response = api.invoke(event, runtime)
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.functions.toolchain import python312
from tests.servers import stop_process


class RuntimeApi:
    """The Lambda Runtime API (2018-06-01) on loopback, enough for awslambdaric: hand out queued events,
    collect each invocation's response or error, and record an init error."""

    PREFIX = "/2018-06-01/runtime"

    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self.pending: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: dict[str, tuple[str, Any]] = {}
        self.init_error: Any = None
        self.changed = threading.Condition()
        self.closed = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{api.PREFIX}/invocation/next":
                    self._reply(404)
                    return
                while not api.closed:
                    try:
                        request_id, body = api.pending.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    deadline_ms = int(time.time() * 1000) + 30_000
                    self._reply(200, body, {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                    })  # fmt: skip
                    return

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                parts = self.path.removeprefix(api.PREFIX).strip("/").split("/")
                with api.changed:
                    if parts == ["init", "error"]:
                        api.init_error = payload
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        api.results[parts[1]] = (parts[2], payload)
                    else:
                        self._reply(404)
                        return
                    api.changed.notify_all()
                self._reply(202, b'{"status":"OK"}')

        return Handler

    def __enter__(self) -> RuntimeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        self.server.shutdown()
        self.server.server_close()

    def invoke(self, event: dict[str, Any], runtime: subprocess.Popen[bytes], timeout_s: float = 30) -> Any:
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while request_id not in self.results:
                if self.init_error is not None:
                    raise AssertionError(f"init error: {self.init_error}")
                if runtime.poll() is not None:
                    raise AssertionError(f"the runtime exited with {runtime.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer to invocation {request_id} in {timeout_s}s")
                self.changed.wait(0.1)
            kind, payload = self.results[request_id]
        assert kind == "response", f"invocation error: {payload}"
        return payload


# awslambdaric's entry point, from a folder of its own after the task root (as /var/runtime on Lambda).
_BOOTSTRAP = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
del sys.argv[1:3]
from awslambdaric.__main__ import main
main(sys.argv)
"""


@contextlib.contextmanager
def lambda_runtime(
    task_root: Path, ric: Path, name: str, variables: dict[str, str], log: Path
) -> Iterator[tuple[RuntimeApi, subprocess.Popen[bytes]]]:
    """One cold container: `python3.12 -I -S -B` (no site-packages, no writes to the read-only task
    root) running awslambdaric for functions/<name>.lambda_handler, stopped by PID afterwards."""
    handler = f"functions/{name}.lambda_handler"
    with RuntimeApi(f"arn:aws:lambda:us-east-1:123456789012:function:stashkit-dev-{name}") as api:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(ric),
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": f"stashkit-dev-{name}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": "us-east-1",
            "_HANDLER": handler,
            **variables,
        }
        argv = [str(python312()), "-I", "-S", "-B", "-c", _BOOTSTRAP, str(task_root), str(ric), handler]
        with log.open("wb") as out:
            runtime = subprocess.Popen(argv, cwd=task_root, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield api, runtime
        finally:
            stop_process(runtime)
