"""Fenced writes: a write carries its holder's fencing token, and is refused if a newer one was seen.

    await fenced_set("report:latest", lease.token, body)  # StaleToken if a newer holder has written
    await fenced_set(lock.key("report"), lease.token, body, issuer=lock)  # ... or merely been granted

    APPEND = FencedScript("return redis.call('RPUSH', KEYS[1], ARGV[1])")
    length = await APPEND.run("audit", lease.token, keys=["audit"], args=["ran"])

Each is one round trip: one script checks the token against the newest accepted for the resource (its
fence record, keys.fence), runs the write, and records the token; a refusal (`StaleToken`, with both
numbers) changes nothing. An equal token is accepted: one holder may write many times.

A fence only knows the tokens that reached it, so a stale holder that writes before its successor's first
write is accepted. When the resource lives in the lock's hash slot (`lock.key(...)`) and the lock has
one endpoint, pass `issuer=lock`: the script then also compares with the lock's counter, the newest token
*issued*, and refuses a stale holder from the moment its successor is granted.

**Outside Redis** the same rule is one conditional write. Keep the token in the row and write only if
yours is at least as new (`<` instead of `<=` lets each token write only once):

    ALTER TABLE reports ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;

    UPDATE reports SET body = :body, fence = :token WHERE id = :id AND fence <= :token;
    -- 0 rows updated: a newer holder has written; stop, as StaleToken would tell you

    INSERT INTO reports (id, body, fence) VALUES (:id, :body, :token)
    ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, fence = EXCLUDED.fence
    WHERE reports.fence <= EXCLUDED.fence;  -- PostgreSQL; 0 rows: refused

Tokens are below 2^53 (keys.lock_counter): they fit BIGINT, JSON and JavaScript numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.errors import StaleToken
from shared.keys import FENCE_TTL_S, fence
from shared.locks.script import FENCE_TEMPLATE
from shared.redis import RedisProvider, get_redis
from shared.scripts import Script, ScriptArg


class TokenIssuer(Protocol):
    """What issued a token (`FencedLock`, `Leadership`): where its counter is, to fence against it."""

    def fence_counter(self) -> tuple[RedisProvider, str]: ...


class FencedScript:
    """A Lua body that runs only if `token` is at least the newest token seen for `resource` (a Redis
    key, normally one the body writes: the fence record lives in its slot). The body reads its own
    KEYS and ARGV as usual and returns what `run` returns; raising a Lua error leaves the fence as it
    was. Make one per body, at import time, like any script (shared/scripts.py)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self._script = Script(FENCE_TEMPLATE.format(body=body))

    async def run(
        self,
        resource: str,
        token: int,
        keys: Sequence[str] = (),
        args: Sequence[ScriptArg] = (),
        *,
        issuer: TokenIssuer | None = None,
        redis: RedisProvider | None = None,
        fence_ttl_ms: int = FENCE_TTL_S * 1000,
    ) -> object:
        """The body's result; `StaleToken` if a newer token was accepted for `resource` (or, with
        `issuer`, issued by it). Runs on `redis`, else the issuer's endpoint, else `get_redis`."""
        counter: list[str] = []
        if issuer is not None:
            endpoint, counter_key = issuer.fence_counter()
            counter = [counter_key]
            redis = redis or endpoint
        client = (redis or get_redis)()
        script_keys = [fence(resource), *counter, *keys]
        script_args = [token, fence_ttl_ms, "1" if counter else "0", *args]
        reply = await self._script.run(client, script_keys, script_args)
        assert isinstance(reply, list), reply
        if reply[0] == 0:
            raise StaleToken(resource, token, int(reply[1]))
        return reply[1] if len(reply) > 1 else None


_SET = FencedScript(
    """
if ARGV[2] == '0' then return redis.call('SET', KEYS[1], ARGV[1]) end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
"""
)


async def fenced_set(
    resource: str,
    token: int,
    value: ScriptArg,
    *,
    ttl_ms: int | None = None,
    issuer: TokenIssuer | None = None,
    redis: RedisProvider | None = None,
) -> None:
    """SET the key `resource` to `value` (with `ttl_ms`, if given) unless a newer token was seen for it;
    `StaleToken` otherwise, with nothing written."""
    fence_ttl_ms = max(ttl_ms or 0, FENCE_TTL_S * 1000)
    await _SET.run(
        resource, token, [resource], [value, ttl_ms or 0], issuer=issuer, redis=redis, fence_ttl_ms=fence_ttl_ms
    )
