"""Each module in functions/ is deployable on both platforms: Vercel's one entry point (api/index.py) serves
it, vercel.json routes its paths there, serverless.yml has its entry, and Vercel's builder will pick an
ASGI app (never the Mangum object).

These read the configuration statically, so they fail at once when a function is added without its
deployment entries; tests/functions/test_vercel_contract.py and test_lambda_contract.py build and run it.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
import yaml

from shared.config import ALL_VARIABLES
from shared.http import PROBLEM_JSON
from tests.functions.toolchain import ROOT, describe_functions, function_names

FUNCTIONS = function_names()
VERCEL = json.loads((ROOT / "vercel.json").read_text())
SERVERLESS = yaml.safe_load((ROOT / "serverless.yml").read_text())


def builder_variable(source: str) -> tuple[str, ast.stmt] | None:
    """The variable Vercel's builder serves, and the statement that binds it: a mirror of
    `contains_app_or_handler_impl` (vercel/vercel packages/python-analysis/.../entrypoint.rs, as bundled
    with vercel@58.10.0). The first top-level `app`/`application` assignment, annotated assignment, def
    or `from x import` binding wins; else a class named handler in any case."""
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name) and target.id in ("app", "application"):
                    return target.id, stmt
        elif isinstance(stmt, ast.AnnAssign):
            if isinstance(stmt.target, ast.Name) and stmt.target.id in ("app", "application"):
                return stmt.target.id, stmt
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if stmt.name in ("app", "application"):
                return stmt.name, stmt
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) in ("app", "application"):
                    return alias.asname or alias.name, stmt
        elif isinstance(stmt, ast.ClassDef) and stmt.name.lower() == "handler":
            return stmt.name, stmt
    return None


def top_level_names(source: str) -> set[str]:
    """Every name a module binds at top level."""
    names: set[str] = set()
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign):
            names |= {node.id for target in stmt.targets for node in ast.walk(target) if isinstance(node, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in stmt.names}
    return names


def test_functions_are_discovered() -> None:
    assert "health" in FUNCTIONS
    assert all(not name.startswith("_") for name in FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_builder_picks_the_starlette_app_in_the_module(name: str) -> None:
    found = builder_variable((ROOT / "functions" / f"{name}.py").read_text())
    assert found is not None, f"functions/{name}.py: Vercel would find no app (build error)"
    variable, stmt = found
    assert variable == "app"
    assert isinstance(stmt, ast.Assign), f"functions/{name}.py: the first `app` must be `app = create_app(api)`"
    call = stmt.value
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "create_app"


def vercel_entry_points() -> list[str]:
    """The files under api/ that Vercel's zero-config detection would build as Python functions: every
    .py file except those under a `_` or `.` name (vercel@58.10.0 dist/chunks/chunk-IBIZT5M4.js:29955-29963;
    it also skips a file with no app, :29970-29975, but any file here is meant to be one)."""
    found = (path.relative_to(ROOT).as_posix() for path in (ROOT / "api").rglob("*.py"))
    return sorted(name for name in found if "/_" not in name and "/." not in name)


def test_one_python_entry_point_keeps_vercel_build_deterministic() -> None:
    """A second Python entry point makes `vercel build` fail at random (ENOENT in the shared venv): the CLI
    does not wait for one entry point's output before building the next, and each build's exact `uv sync`
    uninstalls what the previous one is copying (deploy.md §3.6a; the builder source is cited in
    api/index.py). So every function is served by api/index.py, and nothing may add another build."""
    assert vercel_entry_points() == ["api/index.py"]
    assert list(VERCEL["functions"]) == ["api/index.py"]
    for key in ("builds", "services", "experimentalServices", "experimentalServicesV2"):
        assert key not in VERCEL, f"vercel.json: {key!r} adds builds beside api/index.py"


def test_vercel_entry_point_is_the_function_router() -> None:
    found = builder_variable((ROOT / "api" / "index.py").read_text())
    assert found is not None, "api/index.py: Vercel would find no app (build error)"
    variable, stmt = found
    assert variable == "app"
    assert isinstance(stmt, ast.Assign), ast.dump(stmt)
    call = stmt.value
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "FunctionRouter"


@pytest.mark.parametrize("path", [f"functions/{n}.py" for n in FUNCTIONS] + ["api/index.py"])
def test_no_top_level_handler(path: str) -> None:
    """A top-level `handler`/`Handler` would be taken for a BaseHTTPRequestHandler by Vercel's runtime."""
    names = top_level_names((ROOT / path).read_text())
    assert not {name for name in names if name.lower() == "handler"}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_runtimes_see_an_asgi_app_and_a_mangum_handler(name: str) -> None:
    facts = describe_functions()[name]
    assert facts["vercel_app_type"] == "asgi"  # vercel_runtime's own detect_app_type on the module's `app`
    assert facts["entry_point_app_type"] == "asgi"  # ... and on api/index.py's router, what Vercel runs
    assert facts["served_by_entry_point"], f"api/index.py's table does not serve functions.{name}.app"
    assert not facts["declares_lifespan"]  # neither Mangum (lifespan="off") nor the router would run it
    assert facts["lambda_handler_is_mangum"] and facts["mangum_wraps_app"]
    assert facts["mangum_lifespan"] == "off"  # Mangum would run startup and shutdown on every invocation
    assert PROBLEM_JSON in facts["mangum_text_mime_types"]  # else problem details go out base64-encoded


def test_vercel_json_configures_the_entry_point() -> None:
    assert "framework" in VERCEL and VERCEL["framework"] is None  # a preset (e.g. FastAPI) breaks the build
    assert "builds" not in VERCEL  # `builds` would silently drop memory and maxDuration (deploy.md §2.5)
    settings = VERCEL["functions"]["api/index.py"]
    assert isinstance(settings["memory"], int) and isinstance(settings["maxDuration"], int)
    excluded = settings["excludeFiles"]
    assert all(part in excluded for part in ("tests/**", "emulators/**", "bench/**", ".ci/**"))
    # An unnamed group: a named one (`:path*`) would add `?path=...` to every request (vercel build).
    assert VERCEL["rewrites"] == [{"source": "/api/(.*)", "destination": "/api/index"}]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_serverless_yml_configures_the_function(name: str) -> None:
    function = SERVERLESS["functions"].get(name)
    assert function is not None, f"serverless.yml has no function {name!r}"
    assert function["handler"] == f"functions/{name}.lambda_handler"
    assert isinstance(function["memorySize"], int) and isinstance(function["timeout"], int)
    assert function["timeout"] <= 29  # API Gateway answers 503 after 30 s whatever the Lambda does
    events = [event["httpApi"] for event in function["events"]]
    assert {"method": "*", "path": f"/api/{name}"} in events
    assert {"method": "*", "path": f"/api/{name}/{{proxy+}}"} in events


def test_no_entry_outlives_its_function() -> None:
    existing = set(FUNCTIONS)
    assert set(describe_functions()[FUNCTIONS[0]]["entry_point_serves"]) == existing  # api/index.py's table
    assert set(SERVERLESS["functions"]) == existing


def test_lambda_runtime_and_architecture() -> None:
    provider = SERVERLESS["provider"]
    assert SERVERLESS["frameworkVersion"] == "3"
    assert provider["runtime"] == "python3.12"
    assert provider["architecture"] == "${param:arch}"
    assert SERVERLESS["params"]["default"]["arch"] == "arm64"
    assert set(SERVERLESS["custom"]["manylinux"]) == {"arm64", "x86_64"}
    requirements: dict[str, Any] = SERVERLESS["custom"]["pythonRequirements"]
    assert requirements["dockerizePip"] is False
    assert "--only-binary=:all:" in requirements["pipCmdExtraArgs"]
    assert "serverless-python-requirements" in SERVERLESS["plugins"]


def test_lambda_package_is_an_allow_list() -> None:
    patterns = SERVERLESS["package"]["patterns"]
    assert patterns[0] == "!**"
    assert {"functions/**", "shared/**", "requirements.txt", "!**/__pycache__/**"} <= set(patterns)


def test_lambda_environment_passes_every_library_variable() -> None:
    """Every variable shared/config.py reads reaches Lambda (the KV_* names are Vercel's own)."""
    environment = SERVERLESS["provider"]["environment"]
    wanted = {name for name in ALL_VARIABLES if not name.startswith("KV_")}
    assert set(environment) == wanted
    for name, value in environment.items():
        assert value == f"${{param:{name}, env:{name}, ''}}"


def test_deploy_tools_are_pinned() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    wanted = {"vercel": "58.10.0", "serverless": "3.40.0", "serverless-python-requirements": "6.1.2"}
    wanted["@upstash/redis"] = "1.39.0"  # not deployed: the gateway's subscription tests drive it
    assert package["devDependencies"] == wanted
    assert {name: lock["packages"][f"node_modules/{name}"]["version"] for name in wanted} == wanted
