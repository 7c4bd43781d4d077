"""The Redis endpoints one lock lives on, asked in parallel, and what counts as their answer.

One endpoint is the default (one Upstash database); 2N+1 independent ones make a Redlock, where a
majority decides. Every endpoint gets the same script at once, bounded by one deadline, so asking
three costs about as long as asking the slowest one (bench/locks.py measures it).

Only an outage is tolerated: an endpoint that raises `RedisUnavailable` counts as a "no". Any other
error (an `UpstashError`: a script bug, a key of the wrong type) is a bug and propagates, after every
endpoint has answered, so no call is left running behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.errors import RedisUnavailable
from shared.redis import RedisProvider, redis_deadline
from shared.scripts import Script, ScriptArg


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    replies: dict[int, list[int]]  # endpoint index -> its reply, for the endpoints that answered
    outages: list[RedisUnavailable]  # what the others raised


class Quorum:
    def __init__(self, endpoints: Sequence[RedisProvider]) -> None:
        if len(endpoints) % 2 == 0:  # 2N endpoints tolerate no more failures than 2N-1, at a higher cost
            raise ValueError(f"a lock needs 1 or an odd number of Redis endpoints, not {len(endpoints)}")
        self.endpoints = tuple(endpoints)
        self.majority = len(endpoints) // 2 + 1

    async def ask(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[ScriptArg],
        timeout_s: float,
        on: Iterable[int] | None = None,
    ) -> Answers:
        """Run `script` on every endpoint (or those listed in `on`) at once; each reply must be a list
        of integers."""
        indexes = list(range(len(self.endpoints)) if on is None else on)
        calls = [self._run(i, script, keys, args, timeout_s) for i in indexes]
        if len(calls) == 1:  # one endpoint: no gather, and its errors raise as they are
            try:
                results: list[object] = [await calls[0]]
            except RedisUnavailable as exc:
                results = [exc]
        else:
            results = await asyncio.gather(*calls, return_exceptions=True)
        replies: dict[int, list[int]] = {}
        outages: list[RedisUnavailable] = []
        for index, result in zip(indexes, results, strict=True):
            if isinstance(result, RedisUnavailable):
                outages.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                replies[index] = _integers(result)
        return Answers(replies=replies, outages=outages)

    def require_majority(self, answers: Answers) -> None:
        """Raise `RedisUnavailable` unless a majority of the endpoints answered: without one, a "no"
        could not be told from an outage."""
        if len(answers.replies) >= self.majority:
            return
        first = answers.outages[0]
        if len(self.endpoints) == 1:
            raise first
        raise RedisUnavailable(
            f"{len(answers.replies)} of {len(self.endpoints)} Redis endpoints answered; a lock needs {self.majority}"
        ) from first

    async def _run(
        self, index: int, script: Script, keys: Sequence[str], args: Sequence[ScriptArg], timeout_s: float
    ) -> object:
        async with redis_deadline(timeout_s):
            return await script.run(self.endpoints[index](), keys, args)


def _integers(reply: object) -> list[int]:
    if isinstance(reply, int):
        return [reply]
    assert isinstance(reply, list), reply
    return [int(value) for value in reply]
