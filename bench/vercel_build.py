"""Benchmark: is `vercel build` deterministic? N builds of this tree, beside N of a baseline in the same run.

    .venv/bin/python bench/vercel_build.py [--runs N] [--no-baseline]

Every run is the real `vercel build --yes --standalone` on a fresh clean copy of the working tree (tracked
and new files, as tests/functions/toolchain.py `vercel_build` makes it, so uncommitted functions count).

    subject   this tree: one Python entry point, api/index.py, serving every function
    baseline  the same copy rewritten to one `api/<name>.py` shim and one vercel.json `functions` entry per
              function: the layout that races in the builder (deploy.md §3.6a, api/index.py)

Printed per layout: builds that passed out of N, the median wall time of a build, the size of the function
bundles, and the first error line of each failed build. A subject build passes only if it exits 0 and its
output holds one Python function with every functions/<name>.py in it. Exit status 1 if any subject build
fails (the baseline is expected to fail at random).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.functions.toolchain import function_names, vercel_build  # noqa: E402


def per_function_shims(project: Path) -> None:
    """Rewrite a copy to the per-function layout: a shim and a `functions` entry for each function."""
    config = json.loads((project / "vercel.json").read_text())
    (settings,) = config["functions"].values()
    (project / "api" / "index.py").unlink()
    config["functions"], config["rewrites"] = {}, []
    for name in function_names_in(project):
        (project / "api" / f"{name}.py").write_text(f"from functions.{name} import app\n")
        config["functions"][f"api/{name}.py"] = settings
        config["rewrites"].append({"source": f"/api/{name}/(.*)", "destination": f"/api/{name}"})
    (project / "vercel.json").write_text(json.dumps(config, indent=2))


def function_names_in(project: Path) -> list[str]:
    return sorted(path.stem for path in (project / "functions").glob("[!_]*.py"))


def bundle_mb(func: Path) -> float:
    return sum(path.stat().st_size for path in func.rglob("*") if path.is_file()) / 1e6


def check_subject(output: Path) -> list[Path]:
    """The one-entry-point output: exactly one Python function, holding every function module."""
    funcs = sorted((output / "functions").rglob("*.func"))
    if [func.relative_to(output / "functions").as_posix() for func in funcs] != ["api/index.func"]:
        raise RuntimeError(f"expected one function, api/index.func; built {funcs}")
    shipped = funcs[0] / "functions"
    missing = [name for name in function_names_in(output.parents[1]) if not (shipped / f"{name}.py").exists()]
    if missing:
        raise RuntimeError(f"api/index.func lacks functions {missing}")
    return funcs


def run(label: str, runs: int, prepare: Callable[[Path], None], check: Callable[[Path], list[Path]]) -> int:
    passed, seconds, sizes, errors = 0, [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vercel-build-") as tmp:
            started = time.perf_counter()
            try:
                output = vercel_build(Path(tmp), prepare)
                funcs = check(output)
            except RuntimeError as exc:
                lines = [line for line in str(exc).splitlines() if "Error" in line or "expected" in line]
                errors.append((lines or str(exc).splitlines())[0][:200])
                continue
            seconds.append(time.perf_counter() - started)
            sizes = [round(bundle_mb(func), 1) for func in funcs]
            passed += 1
    timing = f"median {statistics.median(seconds):.1f} s a build" if seconds else "no build passed"
    print(f"{label:<9} {passed}/{runs} builds passed; {timing}; bundles (MB): {sizes or '-'}")
    for error in errors:
        print(f"          failed: {error}")
    return passed


def all_python_functions(output: Path) -> list[Path]:
    return sorted((output / "functions").rglob("*.func"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="builds per layout (default 5)")
    parser.add_argument("--no-baseline", action="store_true", help="build only this tree")
    args = parser.parse_args()
    print(f"vercel build --yes --standalone, {len(function_names())} functions: {', '.join(function_names())}")
    passed = run("subject", args.runs, lambda project: None, check_subject)
    if not args.no_baseline:
        run("baseline", args.runs, per_function_shims, all_python_functions)
    sys.exit(0 if passed == args.runs else 1)


if __name__ == "__main__":
    main()
