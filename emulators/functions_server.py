"""Every function on one local port, routed as vercel.json routes them (`make dev`, and the tests).

    python -m emulators.functions_server --port 3000

Each `api/<name>.py` entry of vercel.json's `functions` serves `/api/<name>`, and each rewrite whose
destination is such an entry sends its source paths there; the app sees the original path, as on
Vercel. The apps are the entry points' own `app` objects (api/index.py's router, which hands each request
to the `app` of functions/<name>.py, the object Lambda runs too), exactly what Vercel runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from emulators.serve import serve

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Mount:
    pattern: re.Pattern[str]
    function: str


def _source_regex(source: str) -> re.Pattern[str]:
    """Vercel's path-to-regexp subset used in our vercel.json: `:name*`, `:name` and `(.*)`."""
    pattern = re.sub(r":(\w+)\*", r"(?P<\1>.*)", source)
    pattern = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{pattern}$")


def mounts(config: dict[str, object]) -> list[Mount]:
    functions = config.get("functions", {})
    assert isinstance(functions, dict)
    names = {Path(entry).stem: entry for entry in functions}
    found = [Mount(re.compile(f"^/api/{re.escape(name)}/?$"), name) for name in names]
    rewrites = config.get("rewrites", [])
    assert isinstance(rewrites, list)
    for rewrite in rewrites:
        target = str(rewrite["destination"]).strip("/").removeprefix("api/")
        if target in names:
            found.append(Mount(_source_regex(str(rewrite["source"])), target))
    return found


class FunctionsRouter:
    def __init__(self, config_path: Path) -> None:
        self.mounts = mounts(json.loads(config_path.read_text()))
        self.apps: dict[str, ASGIApp] = {
            m.function: importlib.import_module(f"api.{m.function}").app for m in self.mounts
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope.get("path", "")
        for mount in self.mounts:
            if mount.pattern.match(path):
                await self.apps[mount.function](scope, receive, send)
                return
        body = b'{"type":"about:blank","title":"Not found","status":404,"detail":"no function serves this path"}'
        headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators.functions_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--config", type=Path, default=ROOT / "vercel.json")
    args = parser.parse_args(argv)
    serve(FunctionsRouter(args.config), args.host, args.port)


if __name__ == "__main__":
    main()
