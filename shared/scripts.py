"""Lua scripts run in one round trip: EVALSHA, and EVAL with the full text only when Redis lacks it.

After a Redis restart or SCRIPT FLUSH the first call costs two round trips; every other call costs one
and sends 40 bytes of hash instead of the script (upstash-ratelimit sends the whole script each time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from upstash_redis.asyncio import Redis
from upstash_redis.errors import UpstashError


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha1 = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, redis: Redis, keys: Sequence[str], args: Sequence[str | int | float]) -> object:
        try:
            return await redis.evalsha(self.sha1, list(keys), list(args))  # type: ignore[arg-type]
        except UpstashError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await redis.eval(self.source, list(keys), list(args))  # type: ignore[arg-type]
