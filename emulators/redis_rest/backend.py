"""Where commands run: one redis-server, or a Redis Cluster routed by hash slot.

Both backends lease a connection per request from `resp.Pool`, so a pipeline is one real Redis
pipeline and a transaction owns its connection from MULTI to EXEC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from emulators.redis_rest.commands import command_name
from emulators.redis_rest.limits import script_lock_setup
from emulators.redis_rest.resp import Command, Pool, Reply, ReplyError

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 64
    connect_timeout_s: float = 2.0
    command_timeout_s: float = 30.0
    script_timeout_s: float = 0.0  # 0: Redis' own lua-time-limit stays

    def setup(self) -> list[Command]:
        return script_lock_setup(self.script_timeout_s)


class Backend(Protocol):
    async def redis_major(self) -> int: ...
    async def pipeline(self, commands: Sequence[Command]) -> list[Reply]: ...
    async def transaction(self, commands: Sequence[Command]) -> list[Reply] | ReplyError: ...
    async def kill_script(self, script: Command) -> Reply: ...
    async def aclose(self) -> None: ...
    def reconnects(self) -> int:
        """How many connections were opened to replace one Redis dropped (the gateway's metrics)."""
        ...


def kill_command(script: Command) -> Command:
    """What stops the script `script` runs: SCRIPT KILL, or FUNCTION KILL for a function (FCALL)."""
    return (b"FUNCTION", b"KILL") if script[0].upper().startswith(b"FCALL") else (b"SCRIPT", b"KILL")


# DISCARD after EXEC: a no-op (an ignored error) when EXEC ran, but when Redis turned EXEC away with
# BUSY (a slow script) the connection would otherwise stay inside MULTI for its next user.
MULTI, EXEC, DISCARD = (b"MULTI",), (b"EXEC",), (b"DISCARD",)


@dataclass(frozen=True, slots=True)
class RedisAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    db: int

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError("--redis-url must look like redis://[user:password@]host:port[/db]")
        db = parts.path.strip("/")
        return cls(
            parts.hostname,
            parts.port or 6379,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            int(db) if db else 0,
        )

    def handshake(self) -> list[Command]:
        """Commands each new connection runs first (AUTH, SELECT): state set once, never by callers."""
        commands: list[Command] = []
        if self.password is not None:
            user = [self.username.encode()] if self.username else []
            commands.append((b"AUTH", *user, self.password.encode()))
        if self.db:
            commands.append((b"SELECT", str(self.db).encode()))
        return commands


def transaction_result(replies: list[Reply]) -> list[Reply] | ReplyError:
    """Turn the replies to MULTI, c1..cn, EXEC (, DISCARD: its reply is dropped) into Upstash's shape.

    A queue-time error makes Redis discard the whole transaction (EXECABORT): Upstash answers one
    error object then, and we name the command that caused it.
    """
    replies = replies[:-1]
    queued, executed = replies[1:-1], replies[-1]
    if isinstance(executed, ReplyError):
        cause = next(((i, r) for i, r in enumerate(queued) if isinstance(r, ReplyError)), None)
        if cause is None:
            return executed
        if str(cause[1]).startswith("BUSY "):  # nothing ran: a script holds Redis (the caller may retry)
            return cause[1]
        return ReplyError(f"{executed} (command {cause[0] + 1}: {cause[1]})")
    if isinstance(replies[0], ReplyError):
        return replies[0]
    assert isinstance(executed, list)
    return executed


async def server_major(pool: Pool, timeout_s: float) -> int:
    (info,) = await pool.roundtrip([(b"INFO", b"server")], timeout_s)
    if isinstance(info, bytes):
        for line in info.splitlines():
            if line.startswith(b"redis_version:"):
                return int(line.split(b":", 1)[1].split(b".")[0])
    return 7


class SingleNode:
    def __init__(self, address: RedisAddress, limits: Limits) -> None:
        self._pool = Pool(
            address.host,
            address.port,
            max_connections=limits.max_connections,
            connect_timeout_s=limits.connect_timeout_s,
            handshake=address.handshake(),
            setup=limits.setup(),
        )
        self._timeout_s = limits.command_timeout_s
        self._major: int | None = None

    async def redis_major(self) -> int:
        if self._major is None:
            self._major = await server_major(self._pool, self._timeout_s)
        return self._major

    async def pipeline(self, commands: Sequence[Command]) -> list[Reply]:
        if not commands:
            return []
        return await self._pool.roundtrip(commands, self._timeout_s)

    async def transaction(self, commands: Sequence[Command]) -> list[Reply] | ReplyError:
        replies = await self._pool.roundtrip([MULTI, *commands, EXEC, DISCARD], self._timeout_s)
        return transaction_result(replies)

    async def kill_script(self, script: Command) -> Reply:
        (reply,) = await self._pool.side_roundtrip([kill_command(script)], self._timeout_s)
        return reply

    def reconnects(self) -> int:
        return self._pool.reconnects

    async def aclose(self) -> None:
        self._pool.close()


# Keyless commands that must reach every primary, and how their replies combine.
_EVERY_PRIMARY = {
    "SCRIPT LOAD",
    "SCRIPT FLUSH",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION LOAD",
    "FUNCTION FLUSH",
    "FUNCTION DELETE",
    "SCRIPT EXISTS",
    "DBSIZE",
    "KEYS",
}
_KEYS_AT_3 = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}


class CrossSlot(Exception):
    pass


def _combine(name: str, replies: list[Reply]) -> Reply:
    error = next((r for r in replies if isinstance(r, ReplyError)), None)
    if error is not None:
        return error
    if name == "DBSIZE":
        return sum(r for r in replies if isinstance(r, int))
    if name == "KEYS":
        return [key for r in replies if isinstance(r, list) for key in r]
    if name == "SCRIPT EXISTS":  # a script exists only if every primary has it
        columns = zip(*(r for r in replies if isinstance(r, list)), strict=True)
        return [min(c for c in column if isinstance(c, int)) for column in columns]
    return replies[0]


class Cluster:
    """Routes each command to the primary that owns its keys' hash slot.

    redis-py's cluster client supplies the topology and the key positions of every command (COMMAND
    info); the commands themselves go over our own pools so replies and errors stay raw.
    """

    def __init__(self, address: RedisAddress, limits: Limits) -> None:
        self._address = address
        self._limits = limits
        self._topology = RedisCluster(
            host=address.host, port=address.port, username=address.username, password=address.password
        )
        self._ready = False
        self._lock = asyncio.Lock()
        self._pools: dict[tuple[str, int], Pool] = {}

    async def _initialize(self, refresh: bool = False) -> None:
        async with self._lock:
            if refresh:
                await self._topology.nodes_manager.initialize()
            elif not self._ready:
                await self._topology.initialize()
                self._ready = True

    def _pool(self, host: str, port: int) -> Pool:
        pool = self._pools.get((host, port))
        if pool is None:
            pool = self._pools[(host, port)] = Pool(
                host,
                port,
                max_connections=self._limits.max_connections,
                connect_timeout_s=self._limits.connect_timeout_s,
                handshake=self._address.handshake(),
                setup=self._limits.setup(),
            )
        return pool

    def _primaries(self) -> list[Pool]:
        return [self._pool(n.host, int(n.port)) for n in self._topology.get_primaries()]

    async def _keys(self, args: Command) -> Sequence[bytes]:
        name = command_name(args)
        if name in _KEYS_AT_3:
            try:
                return args[3 : 3 + int(args[2])]
            except (IndexError, ValueError):
                return ()  # malformed: the default node answers Redis's own error
        try:
            keys = await self._topology.commands_parser.get_keys(*(a.decode() for a in args))
        except Exception:  # unknown command or bad arity: let Redis itself answer
            return ()
        return [k.encode() if isinstance(k, str) else k for k in keys or ()]

    async def _slot(self, commands: Sequence[Command]) -> int | None:
        slots = {key_slot(key) for args in commands for key in await self._keys(args)}
        if len(slots) > 1:
            raise CrossSlot(CROSSSLOT)
        return slots.pop() if slots else None

    async def _pool_for(self, commands: Sequence[Command]) -> Pool:
        await self._initialize()
        slot = await self._slot(commands)
        if slot is None:
            return self._primaries()[0]
        node = self._topology.nodes_manager.get_node_from_slot(slot)
        return self._pool(node.host, int(node.port))

    async def redis_major(self) -> int:
        await self._initialize()
        return await server_major(self._primaries()[0], self._limits.command_timeout_s)

    @staticmethod
    def _broadcast_name(args: Command) -> str | None:
        name = command_name(args)
        if name in ("SCRIPT", "FUNCTION") and len(args) > 1:
            name = f"{name} {args[1].decode(errors='replace').upper()}"
        return name if name in _EVERY_PRIMARY else None

    async def _one(self, args: Command) -> Reply:
        timeout_s = self._limits.command_timeout_s
        broadcast = self._broadcast_name(args)
        if broadcast is not None:
            await self._initialize()
            replies = await asyncio.gather(*(p.roundtrip([args], timeout_s) for p in self._primaries()))
            return _combine(broadcast, [r[0] for r in replies])
        try:
            pool = await self._pool_for([args])
        except CrossSlot as exc:
            return ReplyError(str(exc))
        (reply,) = await pool.roundtrip([args], timeout_s)
        if isinstance(reply, ReplyError) and str(reply).startswith("MOVED"):
            await self._initialize(refresh=True)  # resharded or failed over: ask the new owner once
            (reply,) = await (await self._pool_for([args])).roundtrip([args], timeout_s)
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Reply]:
        """One real pipeline per node, the nodes in parallel; order is kept among the commands of a
        node, hence among those of one hash tag (as in redis-py's ClusterPipeline). Broadcasts,
        cross-slot commands and MOVED answers are then run on their own."""
        replies: list[Reply] = [None] * len(commands)
        by_pool: dict[Pool, list[int]] = {}
        alone: list[int] = []
        for index, args in enumerate(commands):
            try:
                pool = None if self._broadcast_name(args) else await self._pool_for([args])
            except CrossSlot:
                pool = None
            if pool is None:
                alone.append(index)
            else:
                by_pool.setdefault(pool, []).append(index)

        async def run(pool: Pool, indexes: list[int]) -> None:
            results = await pool.roundtrip([commands[i] for i in indexes], self._limits.command_timeout_s)
            for index, reply in zip(indexes, results, strict=True):
                if isinstance(reply, ReplyError) and str(reply).startswith("MOVED"):
                    alone.append(index)
                else:
                    replies[index] = reply

        await asyncio.gather(*(run(pool, indexes) for pool, indexes in by_pool.items()))
        for index in sorted(alone):
            replies[index] = await self._one(commands[index])
        return replies

    async def transaction(self, commands: Sequence[Command]) -> list[Reply] | ReplyError:
        try:
            pool = await self._pool_for(commands)
        except CrossSlot as exc:
            return ReplyError(str(exc))
        replies = await pool.roundtrip([MULTI, *commands, EXEC, DISCARD], self._limits.command_timeout_s)
        return transaction_result(replies)

    async def kill_script(self, script: Command) -> Reply:
        """On the node that runs the script: the one its keys hash to (the first primary if none)."""
        try:
            pool = await self._pool_for([script])
        except CrossSlot as exc:
            return ReplyError(str(exc))
        (reply,) = await pool.side_roundtrip([kill_command(script)], self._limits.command_timeout_s)
        return reply

    def reconnects(self) -> int:
        return sum(pool.reconnects for pool in self._pools.values())

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        await self._topology.aclose()
