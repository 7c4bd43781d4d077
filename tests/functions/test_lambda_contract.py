"""Every function behind AWS Lambda: the event shapes API Gateway, Function URLs and ALB send, answered by
`lambda_handler` (Mangum) in a warm container, then the real package `serverless package` builds,
run by AWS's own runtime client (awslambdaric) against a loopback Runtime API.

A "warm container" is one fresh process that imports the module once and is invoked again and again;
each test process here is exactly that, so no other test's event loop can leak into it (deploy.md §4.2).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Gateway
from tests.functions.events import KINDS, lambda_event
from tests.functions.lambda_runtime import lambda_runtime
from tests.functions.toolchain import (
    ROOT,
    LambdaPackage,
    clean_env,
    describe_functions,
    function_names,
    install_copy,
    package_lambdas,
    unknown_path,
)

FUNCTIONS = function_names()
PROBLEM_JSON = "application/problem+json"
GET_KINDS = [kind for kind in KINDS if kind != "http_api_v2_binary"]
# The one warning importing a Mangum module may give on 3.12 (Mangum.__init__ calls get_event_loop()).
MANGUM_WARNING = "ignore:There is no current event loop:DeprecationWarning"

# Imports the function once, invokes it with every event on stdin in order, writes the responses.
_WARM_CONTAINER = """
import importlib, json, sys
handler = importlib.import_module("functions." + sys.argv[1]).lambda_handler
events = json.load(sys.stdin)
results = [handler(event, None) for event in events]
with open(sys.argv[2], "w") as out:
    json.dump(results, out)
"""


@dataclass(frozen=True)
class Probe:
    kind: str
    method: str
    path: str
    status: int

    def event(self) -> dict[str, Any]:
        return lambda_event(self.kind, self.path, self.method)


@dataclass(frozen=True)
class Invocation:
    probe: Probe
    response: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        """Response headers, lower-cased, from `headers` and `multiValueHeaders` (REST APIs get both)."""
        merged = {k.lower(): ", ".join(v) for k, v in self.response.get("multiValueHeaders", {}).items()}
        return merged | {k.lower(): v for k, v in self.response.get("headers", {}).items()}

    def json(self) -> dict[str, Any]:
        assert self.response["isBase64Encoded"] is False, "JSON must come back as text, not base64"
        body: dict[str, Any] = json.loads(self.response["body"])
        return body


def _body_operation(name: str) -> str | None:
    """A POST route of the function that takes a JSON body and no path parameters, if it has one."""
    routes = [path for path in describe_functions()[name]["json_body_routes"] if "{" not in path]
    return routes[0] if routes else None


def probes(name: str) -> list[Probe]:
    """What every function must answer the same way, whatever it does."""
    base = f"/api/{name}"
    found = [Probe(kind, "GET", f"{base}/openapi.json", 200) for kind in GET_KINDS]
    found += [Probe(kind, "GET", unknown_path(name), 404) for kind in GET_KINDS]
    found.append(Probe("http_api_v2_binary", "POST", f"{base}/openapi.json", 405))
    if (route := _body_operation(name)) is not None:  # binary bytes are not JSON: a 400 problem, not a 500
        found.append(Probe("http_api_v2_binary", "POST", route, 400))
    return found


def run_warm_container(name: str, events: list[dict[str, Any]], env: dict[str, str], tmp: Path) -> list[Any]:
    out = tmp / f"{name}-{uuid.uuid4().hex}.json"
    argv = [sys.executable, "-W", "error", "-W", MANGUM_WARNING, "-c", _WARM_CONTAINER, name, str(out)]
    done = subprocess.run(
        argv, input=json.dumps(events), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    results: list[Any] = json.loads(out.read_text())
    return results


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[Invocation]]]:
    """Per function: two rounds of every probe, all in one process."""
    tmp = tmp_path_factory.mktemp("lambda-warm")
    rounds: dict[str, list[list[Invocation]]] = {}
    for name in FUNCTIONS:
        found = probes(name)
        events = [p.event() for p in found]
        responses = run_warm_container(name, events + events, clean_env(), tmp)
        pairs = [Invocation(p, r) for p, r in zip(found + found, responses, strict=True)]
        rounds[name] = [pairs[: len(found)], pairs[len(found) :]]
    return rounds


def assert_problem(invocation: Invocation) -> dict[str, Any]:
    assert invocation.headers["content-type"] == PROBLEM_JSON
    body = invocation.json()
    assert body["status"] == invocation.probe.status
    assert all(isinstance(body[key], str) for key in ("type", "title", "detail"))
    return body


def assert_shape(invocation: Invocation) -> None:
    """Each event source wants its own response shape back (Mangum 0.22 handlers; deploy.md §4.1)."""
    response, kind = invocation.response, invocation.probe.kind
    if kind == "alb_multi_value_headers":  # multi-value in, multi-value out
        assert "headers" not in response
        assert all(isinstance(v, list) for v in response["multiValueHeaders"].values())
    elif kind == "api_gateway_rest_v1":
        assert isinstance(response["headers"], dict)
        assert all(isinstance(v, list) for v in response["multiValueHeaders"].values())
    else:  # payload 2.0: plain headers, Set-Cookie would go to a `cookies` list
        assert "multiValueHeaders" not in response
        assert all(isinstance(v, str) for v in response["headers"].values())
        assert response.get("cookies", []) == []  # no function sets cookies
    assert isinstance(response["statusCode"], int)
    assert response["isBase64Encoded"] is False


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_event_source_gets_the_openapi_document(warm: dict[str, list[list[Invocation]]], name: str) -> None:
    for invocation in [i for round_ in warm[name] for i in round_ if i.probe.status == 200]:
        assert invocation.response["statusCode"] == 200, (invocation.probe, invocation.response)
        assert invocation.headers["content-type"] == "application/json"
        assert invocation.json()["openapi"] == "3.1.0"
        assert_shape(invocation)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_errors_are_problem_details_from_every_event_source(warm: dict[str, list[list[Invocation]]], name: str) -> None:
    for invocation in [i for round_ in warm[name] for i in round_ if i.probe.status >= 400]:
        assert invocation.response["statusCode"] == invocation.probe.status, (invocation.probe, invocation.response)
        body = assert_problem(invocation)
        assert_shape(invocation)
        if invocation.probe.status == 400:  # the base64 body reached the app decoded, as raw bytes
            assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_warm_container_answers_the_second_round_like_the_first(
    warm: dict[str, list[list[Invocation]]], name: str
) -> None:
    first, second = warm[name]
    assert [i.response["statusCode"] for i in first] == [i.response["statusCode"] for i in second]
    ids = [i.headers["x-request-id"] for round_ in (first, second) for i in round_]
    assert "req-from-client.1" in ids  # the caller's X-Request-Id (http_api_v2.json) is kept
    generated = [i for i in ids if i != "req-from-client.1"]
    assert len(set(generated)) == len(generated)


def test_health_reaches_redis_from_every_event_source_twice(gateway: Gateway, tmp_path: Path) -> None:
    """GET /api/health through each event source, twice in one process: the per-loop Redis client must
    survive between invocations. QStash is not configured here, so the answer is 503 "degraded"."""
    if "health" not in FUNCTIONS:
        pytest.fail("functions/health.py is gone: this test covers it")
    env = clean_env(UPSTASH_REDIS_REST_URL=gateway.url, UPSTASH_REDIS_REST_TOKEN=gateway.token)
    events = [lambda_event(kind, "/api/health", "GET") for kind in GET_KINDS]
    for probe_kind, response in zip(
        GET_KINDS * 2, run_warm_container("health", events * 2, env, tmp_path), strict=True
    ):
        invocation = Invocation(Probe(probe_kind, "GET", "/api/health", 503), response)
        assert response["statusCode"] == 503, response
        body = invocation.json()
        assert body["status"] == "degraded"
        assert body["checks"]["redis"]["ok"] is True, body
        assert body["checks"]["qstash"]["ok"] is False
        assert body["checks"]["qstash"]["error"].startswith("not configured")
        assert body["variables"]["UPSTASH_REDIS_REST_URL"] is True
        assert_shape(invocation)


# --- the packaged function, through awslambdaric --------------------------------------------------


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LambdaPackage]:
    """serverless.yml packaged for arm64 (what we deploy) and x86_64 (what this machine can run)."""
    return package_lambdas(["arm64", "x86_64"], tmp_path_factory.mktemp("lambda-packages"))


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF object"
    machine: int = struct.unpack_from("<H", data, 18)[0]
    return machine


@pytest.mark.slow
def test_arm64_package_ships_aarch64_extensions_only(packages: dict[str, LambdaPackage]) -> None:
    em_aarch64, em_x86_64 = 183, 62  # ELF e_machine values
    for arch, machine in (("arm64", em_aarch64), ("x86_64", em_x86_64)):
        with zipfile.ZipFile(packages[arch].zip_path) as archive:
            objects = [name for name in archive.namelist() if name.endswith(".so")]
            assert objects, f"no compiled extension in the {arch} package (msgspec has one)"
            for name in objects:
                assert _elf_machine(archive.read(name)) == machine, f"{name} in the {arch} package"
        tag = "aarch64" if arch == "arm64" else "x86_64"
        assert all(f"-{tag}-linux-gnu.so" in name for name in objects), objects


@pytest.mark.slow
def test_package_holds_the_functions_and_their_dependencies_only(packages: dict[str, LambdaPackage]) -> None:
    names = packages["arm64"].names()
    top = {name.split("/", 1)[0] for name in names}
    for forbidden in ("tests", "emulators", "bench", "api", "node_modules", ".venv", ".serverless", "bin"):
        assert forbidden not in top
    assert not top & {"serverless.yml", "vercel.json", "package.json", "Makefile", "README.md", "pytest.ini"}
    assert {"functions", "shared", "requirements.txt", "starlette", "mangum", "msgspec", "upstash_redis"} <= top
    assert {f"functions/{name}.py" for name in FUNCTIONS} <= set(names)
    own = [name for name in names if name.startswith(("functions/", "shared/"))]
    sources = {name for name in own if name.endswith(".py")}
    compiled = {name for name in own if name.endswith(".pyc")}
    assert set(own) == sources | compiled
    expected = {re.sub(r"([^/]+)\.py$", r"__pycache__/\1.cpython-312.pyc", name) for name in sources}
    assert compiled == expected, "each of our modules ships its bytecode, and nothing else does"
    assert not [name for name in names if ".dist-info/" in name]


@pytest.mark.slow
def test_dependencies_and_our_modules_ship_hash_checked_bytecode(packages: dict[str, LambdaPackage]) -> None:
    """PEP 552 flags: bit 0 hash-based, bit 1 check the source. Mtime-based .pyc would be stale after
    Serverless dates every zipped file 1980-01-01, and Lambda cannot write new ones."""
    with zipfile.ZipFile(packages["arm64"].zip_path) as archive:
        compiled = [name for name in archive.namelist() if name.endswith(".pyc")]
        assert "starlette/__pycache__/applications.cpython-312.pyc" in compiled
        assert "shared/__pycache__/http.cpython-312.pyc" in compiled
        flags = {name: struct.unpack_from("<I", archive.read(name), 4)[0] for name in compiled}
    assert {name for name, flag in flags.items() if flag != 0b11} == set()


@pytest.mark.slow
def test_cloudformation_declares_every_function_as_configured(packages: dict[str, LambdaPackage]) -> None:
    config = yaml.safe_load((ROOT / "serverless.yml").read_text())
    resources = packages["arm64"].template["Resources"]
    by_handler = {
        r["Properties"]["Handler"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"
    }
    routes = {r["Properties"]["RouteKey"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"}
    integrations = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Integration"]
    assert integrations and all(i["PayloadFormatVersion"] == "2.0" for i in integrations)
    for name in FUNCTIONS:
        function = by_handler[f"functions/{name}.lambda_handler"]
        assert function["Runtime"] == "python3.12"
        assert function["Architectures"] == ["arm64"]
        assert function["MemorySize"] == config["functions"][name]["memorySize"]
        assert function["Timeout"] == config["functions"][name]["timeout"]
        assert set(function["Environment"]["Variables"]) == set(config["provider"]["environment"])
        assert {f"ANY /api/{name}", f"ANY /api/{name}/{{proxy+}}"} <= routes


@pytest.mark.slow
def test_package_fits_lambda(packages: dict[str, LambdaPackage]) -> None:
    """250 MB unzipped is Lambda's hard limit (deploy.md §5.3); bench/coldstart.py holds the 20 MB target."""
    for package in packages.values():
        size = package.unzipped_bytes()
        print(f"{package.arch}: {size / 1e6:.1f} MB unzipped, {package.zip_path.stat().st_size / 1e6:.1f} MB zipped")
        assert size < 250 * 1024 * 1024


@pytest.fixture(scope="module")
def runtime_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """awslambdaric and its dependencies in a folder of their own, like Lambda's /var/runtime."""
    return install_copy("awslambdaric", tmp_path_factory.mktemp("awslambdaric"))


@pytest.mark.slow
def test_packaged_functions_answer_through_awslambdaric(
    packages: dict[str, LambdaPackage], runtime_client: Path, gateway: Gateway, tmp_path: Path
) -> None:
    """The x86_64 twin of the arm64 package (same serverless.yml, only the wheel platform differs), run
    by AWS's runtime client: each function twice in one container, plus a 404 problem; health also
    reaches Redis (the test gateway) with the packaged httpx and upstash-redis."""
    package = packages["x86_64"]
    task_root = package.extract(tmp_path / "task")
    function = next(iter(r for r in package.template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"))
    variables = dict(function["Properties"]["Environment"]["Variables"])  # as CloudFormation would set them
    variables.update(UPSTASH_REDIS_REST_URL=gateway.url, UPSTASH_REDIS_REST_TOKEN=gateway.token)
    for name in FUNCTIONS:
        log = tmp_path / f"{name}.log"
        with lambda_runtime(task_root, runtime_client, name, variables, log) as (api, runtime):
            answered = []
            document = lambda_event("http_api_v2", f"/api/{name}/openapi.json", "GET")
            for _ in range(2):
                answered.append(response := api.invoke(document, runtime))
                assert response["statusCode"] == 200, (response, log.read_text())
                assert json.loads(response["body"])["openapi"] == "3.1.0"
            probe = Probe("api_gateway_rest_v1", "GET", unknown_path(name), 404)
            answered.append(response := api.invoke(probe.event(), runtime))
            missing = Invocation(probe, response)
            assert missing.response["statusCode"] == 404
            assert_problem(missing)
            assert_shape(missing)
            if name == "health":  # a real round trip to Redis with the packaged httpx and upstash-redis
                for _ in range(2):
                    answered.append(health := api.invoke(lambda_event("function_url", "/api/health", "GET"), runtime))
                    assert json.loads(health["body"])["checks"]["redis"]["ok"] is True, health
        # One JSON log line per request on stdout, which Lambda sends to CloudWatch Logs.
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert [line["function"] for line in lines if "status" in line] == [name] * len(answered)
