"""Bounds on what one request may cost: sizes checked while parsing, a per-request deadline, and a
watchdog that stops a script running longer than `--script-timeout`.

Redis runs one script at a time and serves nobody else meanwhile. After `busy-reply-threshold`
(`lua-time-limit`, 5 s by default) it starts answering other clients `BUSY ...` and accepts
`SCRIPT KILL`; before that it reads nothing, not even `SCRIPT KILL`. So the gateway sets
`lua-time-limit` to `--script-timeout` on each connection it opens (best effort: a Redis that refuses
`CONFIG SET` keeps its own limit and the kill waits for it), and:

* a request holding a script (`EVAL*`, `EVALSHA*`, `FCALL*`) that has not been answered after
  `--script-timeout` gets `SCRIPT KILL` (`FUNCTION KILL` for `FCALL`) sent on a connection of its own
  to the node that runs it, and again every `--script-timeout` while it still waits (a pipeline may
  hold several slow scripts). The caller gets `ERR the gateway stopped this script after ...`.
  Redis cannot kill a script that has already written (`UNKILLABLE`): that one runs to its end, and
  its caller may meet `--request-timeout` first;
* a request that Redis turned away whole with `BUSY` (it did not run) is sent again once the script is
  gone, so other callers wait about `--script-timeout` at most instead of seeing errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from emulators.redis_rest.commands import BadRequest
from emulators.redis_rest.resp import Command, Reply, ReplyError

log = logging.getLogger("emulators.redis_rest")

T = TypeVar("T")

# Defaults. Upstash documents no count limit, only 10 MB per request ("Max request size", docs
# redis/overall/billing.mdx), room for some 400,000 small commands. A pipeline of 10,000 SETs takes
# about 50 ms end to end through the gateway, so 10,000 commands or 100,000 arguments (an MSET of
# 50,000 pairs) keep one request to tens of milliseconds of the event loop every caller shares.
MAX_PIPELINE_COMMANDS = 10_000
MAX_COMMAND_ARGS = 100_000
REQUEST_TIMEOUT_S = 30.0  # the SDK itself never gives up (reference G9): this bounds a stuck call
SCRIPT_TIMEOUT_S = 5.0  # Redis' own default lua-time-limit, so by default its BUSY timing is unchanged

SCRIPT_COMMANDS = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"})
_KILLED = "killed by user with"  # Redis 7: "ERR Script killed by user with SCRIPT KILL..."
_BUSY_RETRY_S = (0.005, 0.01, 0.02, 0.05, 0.1)  # then every 0.1 s, within --request-timeout


class TooLarge(BadRequest):
    """A request over one of the size limits; answered 400 with `str(self)`."""


def check_sizes(commands: Sequence[Sequence[object]], max_commands: int, max_args: int) -> None:
    if len(commands) > max_commands:
        raise TooLarge(f"ERR {len(commands)} commands in one request: at most {max_commands} (--max-pipeline-commands)")
    for index, command in enumerate(commands):
        if len(command) > max_args:
            raise TooLarge(
                f"ERR command {index + 1} has {len(command)} arguments: at most {max_args} (--max-command-args)"
            )


def script_lock_setup(script_timeout_s: float) -> list[Command]:
    """What each new connection runs, errors ignored, so Redis hears SCRIPT KILL after the timeout."""
    if script_timeout_s <= 0:
        return []
    return [(b"CONFIG", b"SET", b"lua-time-limit", str(max(1, round(script_timeout_s * 1000))).encode())]


def is_busy(reply: Reply) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith("BUSY ")


class ScriptWatchdog:
    """Runs a backend call, killing the scripts it waits on once they overrun the timeout."""

    def __init__(self, kill: Callable[[Command], Awaitable[Reply]], timeout_s: float) -> None:
        self._kill = kill
        self.timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        return self.timeout_s > 0

    async def run(self, call: Awaitable[T], scripts: Sequence[Command]) -> T:
        if not scripts or not self.enabled:
            return await call
        task = asyncio.ensure_future(call)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
                if done:
                    return task.result()
                if not await self._kill_all(scripts):
                    return await task  # nothing Redis would stop: wait for it to end
        finally:
            if not task.done():
                task.cancel()

    async def _kill_all(self, scripts: Sequence[Command]) -> bool:
        """Send the kill for every script of the request; False once none can be killed."""
        replies = await asyncio.gather(*(self._kill(args) for args in scripts), return_exceptions=True)
        killable = False
        for reply in replies:
            if isinstance(reply, ReplyError) and str(reply).startswith("UNKILLABLE"):
                log.warning("a script overran --script-timeout but has written already: Redis cannot stop it")
            elif isinstance(reply, BaseException) and not isinstance(reply, ReplyError):
                log.warning("could not send SCRIPT KILL: %s", reply)
            else:
                killable = True  # killed, or NOTBUSY: the script is between commands, try again later
        return killable

    def explain(self, reply: Reply) -> Reply:
        """A script Redis killed, in words that say the gateway did it and why."""
        if isinstance(reply, ReplyError) and _KILLED in str(reply):
            return ReplyError(
                f"ERR the gateway stopped this script after {self.timeout_s:g}s (--script-timeout), "
                f"so that it would not block every other caller: {reply}"
            )
        if isinstance(reply, list):
            return [self.explain(item) for item in reply]
        return reply


async def retry_while_busy[R](call: Callable[[], Awaitable[R]], busy: Callable[[R], bool]) -> R:
    """Send again a request that Redis refused whole with BUSY (it did not run: a script holds Redis).
    The caller's --request-timeout bounds the wait."""
    result = await call()
    attempt = 0
    while busy(result):
        await asyncio.sleep(_BUSY_RETRY_S[min(attempt, len(_BUSY_RETRY_S) - 1)])
        attempt += 1
        result = await call()
    return result
