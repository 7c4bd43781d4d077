"""Benchmark: the cold-start import cost of every function, beside two baselines measured in the same run.

    .venv/bin/python bench/coldstart.py [--runs N] [--no-package] [--against GIT_REF]

Builds the Lambda package (`serverless package`, as tests/functions/toolchain.py does) and measures what
a cold Lambda start pays: each subject is imported by a fresh `python3.12 -I -S` (no site-packages) from
the unzipped package N times (default 20; subjects interleaved so drift hits them alike). Figures are the
median wall time and the median `-X importtime` sum of top-level cumulative times, each minus the empty
interpreter. The baselines are written to a temporary folder at run time:

    (a) hello_starlette  Starlette + Mangum + a module-level upstash_redis.asyncio.Redis, one JSON route
    (b) hello_fastapi    the same endpoint written with FastAPI (+ Mangum + the same Redis client)

The functions run with `-B` from the x86_64 twin of the arm64 package (Lambda's task root is read-only):
once with the .pyc files the package ships, once with them removed. Also printed: the package's
unzipped size. With --no-package (or without the npm tools) everything is imported from this venv.

With --against REF the functions as they were at REF (their `functions/` and `shared/`, shipped the same
way, in front of the same dependencies) are measured in the same interleaved runs, and each function's
net wall time is printed as a ratio to its REF self: "no slower than before" measured, not remembered.

Targets (issue 4): every function within 1.5x of (a) and under 0.6x of (b), net wall time; the
package under 20 MB unzipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.functions.toolchain import function_names, install_copy, package_lambdas, python312  # noqa: E402

HELLO_STARLETTE = """
from mangum import Mangum
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from upstash_redis.asyncio import Redis

redis = Redis(url="https://example.upstash.io", token="token")


async def hello(request):
    return JSONResponse({"hello": request.query_params.get("name", "world")})


app = Starlette(routes=[Route("/api/hello", hello)])
lambda_handler = Mangum(app, lifespan="off")
"""

HELLO_FASTAPI = """
from fastapi import FastAPI
from mangum import Mangum
from upstash_redis.asyncio import Redis

redis = Redis(url="https://example.upstash.io", token="token")
app = FastAPI()


@app.get("/api/hello")
async def hello(name: str = "world") -> dict[str, str]:
    return {"hello": name}


lambda_handler = Mangum(app, lifespan="off")
"""

BASELINE_A = "(a) Starlette + Mangum + upstash-redis"
BASELINE_B = "(b) FastAPI + Mangum + upstash-redis"
STARLETTE_TARGET = 1.5  # at most this many times baseline (a)
FASTAPI_TARGET = 0.6  # under this fraction of baseline (b)
PACKAGE_TARGET_MB = 20.0


@dataclass
class Subject:
    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] | None = None
    baseline: Subject | None = None  # the empty interpreter of the same kind, subtracted from the figures
    wall_ms: list[float] = field(default_factory=list)
    importtime_ms: list[float] = field(default_factory=list)

    def measure(self) -> None:
        started = time.perf_counter()
        subprocess.run(self.argv, cwd=self.cwd, env=self.env, check=True, capture_output=True)
        self.wall_ms.append((time.perf_counter() - started) * 1000)
        # The cumulative column of top-level imports (no indentation before the name), in microseconds.
        done = subprocess.run(
            [self.argv[0], "-X", "importtime", *self.argv[1:]],
            cwd=self.cwd,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")]
        total_us = sum(int(row[1]) for row in rows if row[1].strip().isdigit() and not row[2].startswith("  "))
        self.importtime_ms.append(total_us / 1000)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def importtime(self) -> float:
        return statistics.median(self.importtime_ms)

    @property
    def net_wall(self) -> float:
        return self.wall - (self.baseline.wall if self.baseline else 0.0)

    @property
    def net_importtime(self) -> float:
        return self.importtime - (self.baseline.importtime if self.baseline else 0.0)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    cpu = models[0] if models else platform.processor()
    return f"{cpu}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measure_all(subjects: list[Subject], runs: int) -> None:
    for subject in subjects:  # warm-up: writes the .pyc files where they can be written
        subprocess.run(subject.argv, cwd=subject.cwd, env=subject.env, check=True, capture_output=True)
    for _ in range(runs):
        for subject in subjects:
            subject.measure()


def isolated(
    label: str, path: list[Path], module: str, workdir: Path, baseline: Subject | None, *flags: str
) -> Subject:
    """`python3.12 -I -S` (no site-packages, nothing from the environment) importing `module` with
    exactly `path` in front of the standard library, as Lambda's /var/task (plus /var/runtime) is."""
    code = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; import {module}" if module else "pass"
    argv = [str(python312()), "-I", "-S", *flags, "-c", code]
    return Subject(label, argv, workdir, {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, baseline)


def deployed_subjects(workdir: Path) -> tuple[Subject, Subject, Subject, list[Subject], list[str]]:
    """Everything imported the way Lambda imports it: from the unzipped package (the x86_64 twin of the
    arm64 one, so it runs here), with its shipped .pyc files and without them. The baselines see the
    same packages, FastAPI's own copied from this venv (requirements-dev.txt pins it)."""
    packages = package_lambdas(["arm64", "x86_64"], workdir / "packages")
    notes = []
    for arch, package in packages.items():
        size_mb = package.unzipped_bytes() / 1e6
        verdict = "met" if size_mb < PACKAGE_TARGET_MB else "MISSED"
        notes.append(
            f"Lambda package ({arch}): {size_mb:.1f} MB unzipped, {package.zip_path.stat().st_size / 1e6:.1f} MB "
            f"zipped, {len(package.names())} files; target < {PACKAGE_TARGET_MB:.0f} MB unzipped: {verdict}"
        )
    task = packages["x86_64"].extract(workdir / "task")
    task_no_pyc = workdir / "task-no-pyc"
    shutil.copytree(task, task_no_pyc, ignore=shutil.ignore_patterns("__pycache__"))
    extras = install_copy("fastapi", workdir / "fastapi")
    empty = isolated("python3.12 -I -S -c pass", [], "", workdir, None)
    starlette = isolated(BASELINE_A, [workdir, task], "hello_starlette", workdir, empty)
    fastapi = isolated(BASELINE_B, [workdir, task, extras], "hello_fastapi", workdir, empty)
    functions = []
    for name in function_names():
        # -B: Lambda's task root is read-only, so nothing compiled at a cold start is ever kept.
        functions.append(isolated(f"functions.{name}", [task], f"functions.{name}", workdir, empty, "-B"))
        label = f"functions.{name} (no .pyc shipped)"
        functions.append(isolated(label, [task_no_pyc], f"functions.{name}", workdir, empty, "-B"))
    return empty, starlette, fastapi, functions, notes


def reference_subjects(ref: str, workdir: Path, task: Path, empty: Subject) -> list[Subject]:
    """The functions of git `ref`, imported like the deployed ones: its `functions/` and `shared/` as source
    (the package ships no .pyc of its own code, only of the dependencies) in front of the same unzipped
    dependencies."""
    tree = workdir / "reference"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref, "functions", "shared"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    names = sorted(path.stem for path in (tree / "functions").glob("[!_]*.py"))
    return [
        isolated(f"functions.{name} @ {ref}", [tree, task], f"functions.{name}", workdir, empty, "-B")
        for name in names
        if name in function_names()
    ]


def venv_subjects(workdir: Path) -> tuple[Subject, Subject, Subject, list[Subject]]:
    """Fallback without the npm tools: everything imported from this venv, which holds more than a
    deployment (httpx imports its command line's click, rich and pygments when they are installed)."""
    python = sys.executable
    empty = Subject("python -c pass", [python, "-c", "pass"], workdir)
    starlette = Subject(BASELINE_A, [python, "-c", "import hello_starlette"], workdir, None, empty)
    fastapi = Subject(BASELINE_B, [python, "-c", "import hello_fastapi"], workdir, None, empty)
    functions = [
        Subject(f"functions.{name}", [python, "-c", f"import functions.{name}"], ROOT, None, empty)
        for name in function_names()
    ]
    return empty, starlette, fastapi, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-package", action="store_true", help="skip `serverless package` (needs npm tools)")
    parser.add_argument("--against", metavar="GIT_REF", help="also measure the functions as they were at GIT_REF")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stashkit-coldstart-") as tmp:
        workdir = Path(tmp)
        (workdir / "hello_starlette.py").write_text(HELLO_STARLETTE)
        (workdir / "hello_fastapi.py").write_text(HELLO_FASTAPI)
        notes = ["Lambda package: skipped (--no-package); imports measured in this venv"]
        try:
            if args.no_package:
                raise LookupError
            empty, starlette, fastapi, functions, notes = deployed_subjects(workdir)
            where = "from the unzipped Lambda package, python3.12 -I -S (as Lambda runs it)"
            if args.against:
                functions += reference_subjects(args.against, workdir, workdir / "task", empty)
        except (LookupError, RuntimeError) as exc:  # RuntimeError: no npm tools (`make setup`), or packaging failed
            if isinstance(exc, RuntimeError):
                notes = [f"Lambda package: skipped ({str(exc).splitlines()[0]}); imports measured in this venv"]
            empty, starlette, fastapi, functions = venv_subjects(workdir)
            where = "from this venv"
        subjects = [empty, starlette, fastapi, *functions]
        measure_all(subjects, args.runs)

    print(f"Cold-start imports {where}; median of {args.runs} fresh processes; {machine()}")
    print(f"net = minus `{empty.label}` ({empty.wall:.1f} ms wall, {empty.importtime:.1f} ms importtime)\n")
    header = f"{'imported':<45} {'wall ms':>8} {'net ms':>7} {'net importtime ms':>18} {'vs (a)':>7} {'vs (b)':>7}"
    print(header)
    print("-" * len(header))
    for subject in subjects[1:]:
        figures = f"{subject.wall:>8.1f} {subject.net_wall:>7.1f} {subject.net_importtime:>18.1f}"
        ratios = f"{subject.net_wall / starlette.net_wall:>6.2f}x {subject.net_wall / fastapi.net_wall:>6.2f}x"
        print(f"{subject.label:<45} {figures} {ratios}")
    print()
    for subject in functions:
        if "no .pyc" in subject.label or " @ " in subject.label:
            continue
        to_a, to_b = subject.net_wall / starlette.net_wall, subject.net_wall / fastapi.net_wall
        print(
            f"{subject.label}: {to_a:.2f}x (a) (target <= {STARLETTE_TARGET}x: "
            f"{'met' if to_a <= STARLETTE_TARGET else 'MISSED'}), {to_b:.2f}x (b) (target < {FASTAPI_TARGET}x: "
            f"{'met' if to_b < FASTAPI_TARGET else 'MISSED'})"
        )
    for subject in functions:
        if " @ " in subject.label:
            now = next(s for s in functions if s.label == subject.label.split(" @ ")[0])
            print(f"{now.label}: {now.net_wall:.1f} ms now, {subject.net_wall:.1f} ms at {args.against} "
                  f"({now.net_wall / subject.net_wall:.2f}x; importtime {now.net_importtime:.1f} against "
                  f"{subject.net_importtime:.1f} ms)")  # fmt: skip
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
