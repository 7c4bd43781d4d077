"""A deployment on loopback for the benchmarks: a private redis-server, the Upstash-REST gateway, the
QStash emulator routing the public URL to the functions server, and a bare uvicorn app beside them
(the baseline a benchmark compares with). Everything on free ports, stopped by `stop()`.

    stack = LocalStack(workdir, public_url="https://stashkit.bench")
    stack.write("bench_jobs", JOBS_MODULE)           # modules the functions or the bare app import
    stack.start({"STASHKIT_JOB_MODULES": "bench_jobs"}, bare_app="bare_app:app", bare_url="https://bare.bench")
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from emulators.qstash.config import DEFAULT_CURRENT_SIGNING_KEY, DEFAULT_NEXT_SIGNING_KEY, DEFAULT_TOKEN
from tests.servers import Process, free_port, python_module, redis_server

REDIS_TOKEN = "bench-token"


class LocalStack:
    def __init__(self, workdir: Path, public_url: str) -> None:
        self.workdir, self.public_url = workdir, public_url
        self.processes: list[Process] = []
        self.gateway_port, self.qstash_port = free_port(), free_port()
        self.functions_port, self.bare_port = free_port(), free_port()

    def write(self, module: str, source: str) -> None:
        (self.workdir / f"{module}.py").write_text(source)

    def start(self, env: dict[str, str], *, bare_app: str, bare_url: str | None = None) -> None:
        """The functions get the stack's environment plus `env`; `bare_app` ("module:app") is served on
        `bare_port`, and QStash delivers `bare_url` there when it is given."""
        node = self._run(redis_server())
        redis_url = f"redis://127.0.0.1:{node.port}"
        self._run(python_module("emulators.redis_rest", self.gateway_port, "--redis-url", redis_url, "--token",
                                REDIS_TOKEN))  # fmt: skip
        routes = [f"{self.public_url}=http://127.0.0.1:{self.functions_port}"]
        if bare_url is not None:
            routes.append(f"{bare_url}=http://127.0.0.1:{self.bare_port}")
        self._run(python_module("emulators.qstash", self.qstash_port, *(a for r in routes for a in ("--route", r))))
        functions_env = {
            "UPSTASH_REDIS_REST_URL": f"http://127.0.0.1:{self.gateway_port}",
            "UPSTASH_REDIS_REST_TOKEN": REDIS_TOKEN,
            "QSTASH_URL": f"http://127.0.0.1:{self.qstash_port}",
            "QSTASH_TOKEN": DEFAULT_TOKEN,
            "QSTASH_CURRENT_SIGNING_KEY": DEFAULT_CURRENT_SIGNING_KEY,
            "QSTASH_NEXT_SIGNING_KEY": DEFAULT_NEXT_SIGNING_KEY,
            "STASHKIT_PUBLIC_URL": self.public_url,
            "PYTHONPATH": str(self.workdir),
            **env,
        }
        self._run(python_module("emulators.functions_server", self.functions_port, env=functions_env))
        bare = [sys.executable, "-m", "uvicorn", "--app-dir", str(self.workdir), bare_app, "--port",
                str(self.bare_port), "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
        self._run(Process(bare, self.bare_port))

    def qstash(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A call to the emulator's API with its token."""
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
        return httpx.request(method, f"http://127.0.0.1:{self.qstash_port}{path}", headers=headers, **kwargs)  # type: ignore[arg-type]

    def gateway_requests(self) -> int:
        """Requests the gateway has served: Redis round trips."""
        stats = httpx.get(
            f"http://127.0.0.1:{self.gateway_port}/__stats", headers={"Authorization": f"Bearer {REDIS_TOKEN}"}
        )
        total: int = stats.json()["total"]["requests"]
        return total

    def _run(self, process: Process) -> Process:
        self.processes.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
