"""Lua scripts run in one round trip: EVALSHA, and EVAL with the full text only when Redis lacks it.

After a Redis restart or SCRIPT FLUSH the first call costs two round trips; every other call costs one
and sends 40 bytes of hash instead of the script (upstash-ratelimit sends the whole script each time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from upstash_redis.errors import UpstashError

from shared.redis import RedisClient

ScriptArg = str | int | float

# A prelude for scripts that decide with a time: `now_ms(ARGV[n])` is the caller's time when it gave one
# (an injected clock: shared/clock.py), else Redis TIME in milliseconds. The script returns the time it
# used, so everything derived from the decision follows one clock.
NOW_MS = """
local function now_ms(given)
  local now = tonumber(given)
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
"""


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha1 = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, redis: RedisClient, keys: Sequence[str], args: Sequence[ScriptArg]) -> object:
        try:
            return await redis.execute(["EVALSHA", self.sha1, len(keys), *keys, *args])
        except UpstashError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await redis.execute(["EVAL", self.source, len(keys), *keys, *args])
