"""Every function as Vercel builds and runs it: `vercel build --standalone` on a clean copy of the project
(offline, no credentials) builds one Python function, api/index.py, which serves every function (deploy.md
§3.6a: two Python entry points make the build fail at random); then each function is invoked through it
and Vercel's own Python runtime (`vercel_runtime.vc_init`, vendored into the bundle by the builder) in both
of its modes:

    legacy  vc_handler(event) with the JSON event {method, path, headers, body, encoding}
    IPC     uvicorn on a port announced over VERCEL_IPC_PATH, real HTTP requests ("Fluid compute")
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.functions.toolchain import ROOT, function_names, python312, unknown_path, vercel_build
from tests.servers import stop_process

pytestmark = pytest.mark.slow

FUNCTIONS = function_names()
VERCEL = json.loads((ROOT / "vercel.json").read_text())
PROBLEM_JSON = "application/problem+json"
# What a function bundle may hold besides its dependencies (_vendor) and the builder's two files.
SHIPPED_TOP_LEVEL = {
    "_vendor",
    "api",
    "functions",
    "shared",
    "requirements.txt",
    "vc__handler__python.py",
    ".vc-config.json",
}

# Vercel's legacy entry point: import the trampoline once, call vc_handler per request, write the answers.
_LEGACY_INVOKER = """
import base64, json, sys
from vc__handler__python import vc_handler
results = []
for request in json.load(sys.stdin):
    body = base64.b64encode(request.pop("body").encode()).decode()
    payload = {**request, "body": body, "encoding": "base64"}
    results.append(vc_handler({"body": json.dumps(payload)}, None))
with open(sys.argv[1], "w") as out:
    json.dump(results, out)
"""


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vercel_build(tmp_path_factory.mktemp("vercel"))


def function_dir(output: Path) -> Path:
    return output / "functions" / "api" / "index.func"


def runtime_env(func: Path, **extra: str) -> dict[str, str]:
    """What the function's process gets: .vc-config.json's environment (PYTHONPATH=_vendor, relative to
    the task root) and nothing from this machine's Python set-up."""
    config = json.loads((func / ".vc-config.json").read_text())
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **config["environment"], **extra}


def test_one_python_build_serves_every_function(output: Path) -> None:
    """The build that would race if it held a second Python entry point: it passed (the fixture), it ran
    @vercel/python once, and its one function holds every function's code."""
    builds = json.loads((output / "builds.json").read_text())["builds"]
    assert [build["src"] for build in builds if build["use"] == "@vercel/python"] == ["api/index.py"]
    built = sorted(path.relative_to(output / "functions").as_posix() for path in output.rglob("*.func"))
    assert built == ["api/index.func"]
    for name in FUNCTIONS:
        assert (function_dir(output) / "functions" / f"{name}.py").exists()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_build_output_routes_every_function_path_to_the_entry_point(output: Path, name: str) -> None:
    config = json.loads((output / "config.json").read_text())  # absent when the build silently did nothing
    assert config["version"] == 3
    routes = config["routes"][: config["routes"].index({"handle": "error"})]  # before the 404 fallbacks
    for path in (f"/api/{name}", f"/api/{name}/", f"/api/{name}/a/b"):
        matched = next((route for route in routes if "src" in route and re.match(route["src"], path)), None)
        assert matched is not None and matched.get("dest") == "/api/index", (path, matched)


def test_trampoline_serves_the_app_variable(output: Path) -> None:
    trampoline = (function_dir(output) / "vc__handler__python.py").read_text()
    variables = dict(re.findall(r'"(__VC_HANDLER_\w+)": "([^"]*)"', trampoline))
    assert variables["__VC_HANDLER_VARIABLE_NAME"] == "app"
    assert variables["__VC_HANDLER_MODULE_NAME"] == "api.index"
    assert variables["__VC_HANDLER_ENTRYPOINT"] == "api/index.py"


def test_function_config_carries_vercel_json_settings(output: Path) -> None:
    config = json.loads((function_dir(output) / ".vc-config.json").read_text())
    wanted = VERCEL["functions"]["api/index.py"]
    assert (config["memory"], config["maxDuration"]) == (wanted["memory"], wanted["maxDuration"])
    assert config["runtime"] == "python3.12"
    assert config["handler"] == "vc__handler__python.vc_handler"


def test_only_function_code_and_dependencies_ship(output: Path) -> None:
    """excludeFiles is honoured: no tests/, emulators/, bench/ or tool configuration in the bundle."""
    func = function_dir(output)
    shipped = {path.relative_to(func).parts[0] for path in func.rglob("*") if path.is_file()}
    assert shipped <= SHIPPED_TOP_LEVEL, shipped - SHIPPED_TOP_LEVEL
    assert {path.name for path in (func / "api").iterdir()} == {"index.py"}
    assert (func / "_vendor" / "vercel_runtime" / "vc_init.py").exists()


def test_static_output_publishes_nothing_but_robots_txt(output: Path) -> None:
    """Without a build of its own, Vercel publishes every uploaded non-api file (our sources) as a static
    asset; vercel.json's build writes one robots.txt into its own output directory instead."""
    static = output / "static"
    published = {str(path.relative_to(static)) for path in static.rglob("*") if path.is_file()}
    assert published == {"robots.txt"}


def _decoded(response: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    headers = {
        key.lower(): value if isinstance(value, str) else ", ".join(value) for key, value in response["headers"].items()
    }
    body = base64.b64decode(response["body"]) if response.get("encoding") == "base64" else response["body"].encode()
    return response["statusCode"], headers, body


@pytest.mark.parametrize("name", FUNCTIONS)
def test_legacy_mode_answers_twice_in_one_process(output: Path, name: str, tmp_path: Path) -> None:
    func = function_dir(output)
    request = {"method": "GET", "headers": {"host": "stashkit.vercel.app", "accept": "application/json"}, "body": ""}
    requests = [
        {**request, "path": f"/api/{name}/openapi.json?tag=a&tag=b"},
        {**request, "path": f"/api/{name}/openapi.json"},
        {**request, "path": unknown_path(name)},
        {**request, "method": "POST", "path": f"/api/{name}/openapi.json", "body": "\u00ff binary"},
        {**request, "path": f"/api/{name}x/openapi.json"},  # no such function: the router's own 404
    ]
    out = tmp_path / "responses.json"
    done = subprocess.run(
        [str(python312()), "-S", "-c", _LEGACY_INVOKER, str(out)],
        input=json.dumps(requests),
        cwd=func,
        env=runtime_env(func),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [_decoded(response) for response in json.loads(out.read_text())]
    for status, headers, body in answers[:2]:
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["openapi"] == "3.1.0"
    for (status, headers, body), wanted in zip(answers[2:], (404, 405, 404), strict=True):
        assert status == wanted
        assert headers["content-type"] == PROBLEM_JSON
        assert json.loads(body)["status"] == wanted


class IpcListener:
    """The platform's end of VERCEL_IPC_PATH: NUL-terminated JSON messages from the function process."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(30)
        self.messages: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        connection, _ = self.server.accept()
        buffer = b""
        with connection:
            while chunk := connection.recv(65536):
                buffer += chunk
                *complete, buffer = buffer.split(b"\0")
                with self.arrived:
                    self.messages += [json.loads(message) for message in complete]
                    self.arrived.notify_all()

    def wait_for(self, kind: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                found = [message for message in self.messages if message.get("type") == kind]
                if found:
                    return found[0]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {kind!r} message; got {self.messages}")
                self.arrived.wait(0.1)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def ipc_function(output: Path, tmp_path: Path, gateway: Gateway) -> Iterator[Any]:
    """Start the built function in IPC mode; yields a starter that returns its base URL."""
    started: list[tuple[subprocess.Popen[bytes], IpcListener]] = []

    def start() -> str:
        func = function_dir(output)
        listener = IpcListener(tmp_path / f"ipc-{uuid.uuid4().hex[:8]}.sock")
        listener.thread.start()
        env = runtime_env(
            func,
            VERCEL_IPC_PATH=str(listener.server.getsockname()),
            UPSTASH_REDIS_REST_URL=gateway.url,
            UPSTASH_REDIS_REST_TOKEN=gateway.token,
        )
        argv = [str(python312()), "-S", "-c", "import vc__handler__python"]
        process = subprocess.Popen(argv, cwd=func, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append((process, listener))
        port = listener.wait_for("server-started")["payload"]["httpPort"]
        return f"http://127.0.0.1:{port}"

    yield start
    for process, listener in started:
        stop_process(process)
        listener.close()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_ipc_mode_serves_real_http_requests(ipc_function: Any, name: str) -> None:
    base_url = ipc_function()
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/_vercel/ping").status_code == 200
        for _ in range(2):
            document = client.get(f"/api/{name}/openapi.json")
            assert document.status_code == 200
            assert document.json()["openapi"] == "3.1.0"
        missing = client.get(unknown_path(name))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM_JSON
        if name == "health":  # the bundled httpx and upstash-redis reach Redis (the test gateway)
            for _ in range(2):
                health = client.get("/api/health")
                assert health.json()["checks"]["redis"]["ok"] is True, health.text
