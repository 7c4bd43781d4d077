"""Vercel's one entry point: every function behind one Python build, dispatched by the path's second
segment (`/api/<name>` and everything below it go to `functions.<name>.app`, which sees the path unchanged).

Why one entry point and not one shim per function (deploy.md §3.6a): with two or more Python entry points
`vercel build` fails at random (ENOENT under `.vercel/python/.venv`), locally and on Vercel's builders alike:
- the CLI goes on to the next entry point without waiting for this one's output to be written
  (vercel@58.10.0 dist/commands/build/index.js:2053-2084 push `writeBuildResult` onto `ops`, awaited only
  once every build has run, :2102-2103 and :2147-2148; the same in vercel@64.0.2);
- @vercel/python gives every entry point one venv (6.56.2 dist/index.js:11508; the same in 25.0.0), and
  each build's `uv sync` (:11610) is exact (:5404, no `--inexact`): it uninstalls the `vercel-runtime`
  that the previous build injected (:11670) while that build's output is still being copied out of it.
One build has nothing to race with. Its costs (one memory/maxDuration for all, one bundle) are in
README.md, Deployment > Vercel. Each function's module is imported on its first request, not here, so a
cold start pays only for the function it serves, as with one bundle per function.

To add a function, add it to the table: tests/functions/test_deploy_config.py checks that the table
serves every functions/<name>.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import NotFound
from shared.http import problem_response


class FunctionRouter:
    """An ASGI app that hands each request for `/api/<name>[/...]` to the `app` of the module registered
    as `name`, importing that module on its first request."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self.modules = dict(modules)
        self._apps: dict[str, ASGIApp] = {}

    def app_for(self, name: str) -> ASGIApp | None:
        if name not in self._apps and name in self.modules:
            self._apps[name] = importlib.import_module(self.modules[name]).app
        return self._apps.get(name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Nothing to forward: Lambda runs every function with Mangum(lifespan="off"), so none may rely
            # on lifespan (tests/functions/test_deploy_config.py checks that none declares one).
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        app = self.app_for(path.split("/", 3)[2] if path.startswith("/api/") else "")
        if app is None:
            await problem_response(NotFound(f"no function serves {path}"), None)(scope, receive, send)
            return
        await app(scope, receive, send)


app = FunctionRouter(
    {
        "cache": "functions.cache",
        "dlq": "functions.dlq",
        "health": "functions.health",
        "jobs": "functions.jobs",
        "leaderboards": "functions.leaderboards",
        "ratelimit": "functions.ratelimit",
        "webhooks": "functions.webhooks",
    }
)
