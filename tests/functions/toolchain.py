"""The deploy tool chain, driven as a developer would: which functions exist, a clean copy of the
project, `serverless package` (Lambda) and `vercel build` (Vercel), and the runtime clients.

Everything runs offline except the package registries (pip fetches the Lambda wheels, uv the Vercel
ones). The npm tools come from `make setup` (package.json at the repository root).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "stashkit"  # serverless.yml `service`, hence .serverless/stashkit.zip
# Variables that would configure the functions: the tests set them explicitly, never inherit them.
_CONFIG_PREFIXES = ("UPSTASH_", "KV_", "QSTASH_", "STASHKIT_")
_TOOL_TIMEOUT_S = 300


def function_names() -> list[str]:
    """Every deployable function: functions/<name>.py, except private modules (`_x.py`, `__init__.py`)."""
    return sorted(path.stem for path in (ROOT / "functions").glob("[!_]*.py"))


# Imports every function in a fresh interpreter and reports what the tests need to know about it.
_DESCRIBE = """
import importlib, json, sys
from mangum import Mangum
from vercel_runtime.resolver import detect_app_type
from shared.openapi import openapi_document
entry_point = importlib.import_module("api.index").app  # the one Vercel entry point (api/index.py)
found = {}
for name in sys.argv[2:]:
    module = importlib.import_module("functions." + name)
    handler = module.lambda_handler
    found[name] = {
        "openapi": openapi_document(module.api),
        # POST routes that parse a JSON body first (a guard, admin or `limit=`, answers before the body is read)
        "json_body_routes": [op.path for op in module.api.operations if op.method == "POST" and op.body is not None
                             and not op.admin and op.limit is None],
        "routes": sorted({op.path for op in module.api.operations}),
        "vercel_app_type": detect_app_type(module.app, "functions." + name, "app")[0],
        "lambda_handler_is_mangum": isinstance(handler, Mangum),
        "mangum_wraps_app": getattr(handler, "app", None) is module.app,
        "mangum_lifespan": getattr(handler, "lifespan", None),
        "mangum_text_mime_types": list(handler.config["text_mime_types"]) if isinstance(handler, Mangum) else [],
        "served_by_entry_point": entry_point.app_for(name) is module.app,
        "entry_point_serves": sorted(entry_point.modules),
        "entry_point_app_type": detect_app_type(entry_point, "api.index", "app")[0],
        "declares_lifespan": type(module.app.router.lifespan_context).__name__ != "_DefaultLifespan",
    }
with open(sys.argv[1], "w") as out:
    json.dump(found, out)
"""


@cache
def describe_functions() -> dict[str, dict[str, Any]]:
    """Each function's OpenAPI document, Vercel's verdict on its `app` and on the entry point that serves it,
    and its Mangum settings, read in a fresh interpreter: importing a function here would leave Mangum's
    event loop behind in the pytest process (pytest-asyncio replaces it without closing it, and its sockets
    leak)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "functions.json"
        argv = [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _DESCRIBE, str(out), *function_names()]
        done = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"importing the functions failed:\n{done.stderr}")
        described: dict[str, dict[str, Any]] = json.loads(out.read_text())
        return described


def unknown_path(name: str) -> str:
    """A path below `/api/<name>` that none of the function's routes matches (Starlette's converters:
    `{x}` one segment, `{x:path}` the rest), for probing its 404 problem."""
    patterns = [
        re.compile("^" + re.sub(r"{[^}:]+:path}", ".+", re.sub(r"{[^}:]+}", "[^/]+", route)) + "$")
        for route in describe_functions()[name]["routes"]
    ]
    for candidate in ("no-such-route", "no-such/route", "no/such/route/here"):
        path = f"/api/{name}/{candidate}"
        if not any(pattern.match(path) for pattern in patterns):
            return path
    raise AssertionError(f"every probe path is a route of {name}")


def project_files() -> list[str]:
    """What a clean checkout of the working tree holds: tracked files plus new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


def copy_project(dest: Path) -> Path:
    """A clean copy of the project in `dest` (no caches, no .venv, no node_modules, no build output)."""
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def python312() -> Path:
    """The real CPython 3.12 the venv was made from (a pyenv shim may not resolve to 3.12)."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    candidate = base.with_name("python3.12")
    if not candidate.exists():
        raise RuntimeError(f"no python3.12 beside {base}: the venv must be made from CPython 3.12")
    return candidate


def node_tool(name: str) -> Path:
    tool = ROOT / "node_modules" / ".bin" / name
    if not tool.exists():
        raise RuntimeError(f"{tool} is missing: run `make setup` (it installs package.json's tools with npm ci)")
    return tool


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any function configuration or virtualenv, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_CONFIG_PREFIXES) and key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(extra)
    return env


def tool_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for the npm tools: python3.12 and uv first on PATH (the venv's own python is not
    on it), telemetry and update checks off."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    uv = bin_dir / "uv"
    if not uv.exists():
        uv.symlink_to(Path(sys.executable).with_name("uv"))
    path = os.pathsep.join([str(python312().parent), str(bin_dir), os.environ.get("PATH", "")])
    return clean_env(
        PATH=path,
        VERCEL_TELEMETRY_DISABLED="1",
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
        NO_UPDATE_NOTIFIER="1",
        **extra,
    )


def run_tool(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a build tool; on failure raise with its whole output, so the test report shows why."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{output}")
    return output


@dataclass(frozen=True)
class LambdaPackage:
    arch: str
    zip_path: Path
    template: dict[str, Any]  # the CloudFormation template `serverless deploy` would send
    log: str

    def unzipped_bytes(self) -> int:
        with zipfile.ZipFile(self.zip_path) as archive:
            return sum(info.file_size for info in archive.infolist())

    def names(self) -> list[str]:
        with zipfile.ZipFile(self.zip_path) as archive:
            return archive.namelist()

    def extract(self, dest: Path) -> Path:
        with zipfile.ZipFile(self.zip_path) as archive:
            archive.extractall(dest)
        return dest


def package_lambda(arch: str, workdir: Path) -> LambdaPackage:
    """`serverless package --param=arch=<arch>` on a clean copy of the project, as `make package-lambda`
    builds it: our modules compiled to hash-checked .pyc first, and SOURCE_DATE_EPOCH so that pip writes
    hash-checked .pyc for the dependencies, which stay valid after Serverless zips every file with a
    fixed date (see serverless.yml)."""
    project = copy_project(workdir / "project")
    (project / "node_modules").symlink_to(ROOT / "node_modules")
    compile_own = [str(python312()), "-m", "compileall", "-q", "-f", "--invalidation-mode", "checked-hash"]
    run_tool([*compile_own, "functions", "shared"], project, clean_env())  # as `make package-lambda` does
    out = workdir / "out"
    env = tool_env(workdir / "bin", SOURCE_DATE_EPOCH="315532800")
    argv = [str(node_tool("serverless")), "package", "--package", str(out), f"--param=arch={arch}"]
    log = run_tool(argv, project, env)
    template = json.loads((out / "cloudformation-template-update-stack.json").read_text())
    return LambdaPackage(arch, out / f"{SERVICE}.zip", template, log)


def package_lambdas(archs: Iterable[str], workdir: Path) -> dict[str, LambdaPackage]:
    """Several architectures at once (each is mostly waiting on node and pip)."""
    archs = list(archs)
    with ThreadPoolExecutor(max_workers=len(archs)) as pool:
        futures = {arch: pool.submit(package_lambda, arch, workdir / arch) for arch in archs}
        return {arch: future.result() for arch, future in futures.items()}


def vercel_build(workdir: Path, prepare: Callable[[Path], object] = lambda project: None) -> Path:
    """`vercel build --standalone` on a clean copy, with the offline project settings that make it
    build at all (without `settings` it exits 0 having built nothing: deploy.md §2.4). `prepare` may
    alter the copy first (bench/vercel_build.py builds a variant of the project with it)."""
    project = copy_project(workdir / "project")
    prepare(project)
    settings = {"projectId": "prj_offlinestashkit000000000", "orgId": "team_offlinestashkit00000000"}
    (project / ".vercel").mkdir()
    (project / ".vercel" / "project.json").write_text(json.dumps({**settings, "settings": {"framework": None}}))
    argv = [str(node_tool("vercel")), "build", "--yes", "--standalone"]
    run_tool(argv, project, tool_env(workdir / "bin"))
    return project / ".vercel" / "output"


def install_copy(distribution: str, dest: Path) -> Path:
    """`pip install --target dest distribution` without the network: copy the files of the installed
    distribution and of everything it requires from this venv (requirements-dev.txt pins them)."""
    pending, seen = [distribution], set()
    while pending:
        dist = importlib.metadata.distribution(pending.pop())
        if dist.name.lower() in seen:
            continue
        seen.add(dist.name.lower())
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or "__pycache__" in file.parts:
                continue
            target = dest / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return dest
