"""Who may call the gateway, and what a read-only token may run.

Tokens: any number of read-write tokens (`--token`, repeatable, so one can be rotated in before the
old one is dropped) and read-only tokens (`--readonly-token`), as Upstash gives every database a
"Standard" and a "Read Only" REST token (docs `redis/features/restapi.mdx`, "Security and
Authentication"). The offered token is compared with every configured one, always all of them, in
constant time: each side is hashed to a fixed-length SHA-256 digest first, so neither the position of
a match nor a token's length shows in the timing.

Read-only rule (Redis' own command table decides, fetched once with `COMMAND` and cached):
a read-only token runs a command when Redis flags it `readonly` (it reads keys and writes nothing)
and does not put it in the `@dangerous` category (that excludes `KEYS`, `SORT_RO`, `INFO`), plus the
keyless `PING`, `ECHO` and `TIME`. `SCAN` is refused as well: Upstash's page says its read-only token
restricts "some powerful read commands (e.g. SCAN, KEYS)". Everything else is refused: writes
(`write`), administration (`admin`), `PUBLISH` (flagged `pubsub`, not `readonly`: it reaches every
subscriber), script cache changes (`SCRIPT LOAD`/`FLUSH`), and commands Redis does not know (a module
command whose flags cannot be checked). Scripts are the exception: `EVAL`, `EVALSHA` and `FCALL` run
as `EVAL_RO`, `EVALSHA_RO` and `FCALL_RO`, so Redis itself stops a script that tries to write; that
error, like every refusal here, reads as Upstash's
`NOPERM this user has no permissions to run the '<command>' command or its subcommand` (HTTP 403).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from enum import Enum

from emulators.redis_rest.backend import Backend
from emulators.redis_rest.resp import Reply, ReplyError


class Access(Enum):
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def same_token(offered: bytes, digest: bytes) -> bool:
    """Whether `offered` is the token `digest` was made from, in constant time (used for --metrics-token)."""
    return hmac.compare_digest(token_digest(offered), digest)


class Tokens:
    def __init__(self, read_write: Iterable[str], read_only: Iterable[str] = ()) -> None:
        rw, ro = list(read_write), list(read_only)
        if not rw:
            raise ValueError("at least one read-write token is needed")
        if any(not token for token in (*rw, *ro)):
            raise ValueError("a token cannot be empty")
        if set(rw) & set(ro):
            raise ValueError("a token cannot be both read-write and read-only")
        self._known = [(token_digest(t.encode()), Access.READ_WRITE) for t in rw]
        self._known += [(token_digest(t.encode()), Access.READ_ONLY) for t in ro]

    def access(self, offered: bytes) -> Access | None:
        """What the offered token may do, or None if it is no token of ours."""
        if not offered:
            return None
        digest = token_digest(offered)
        read_write = read_only = False
        for known, access in self._known:  # every token, always: no early exit on a match
            match = hmac.compare_digest(digest, known)
            if access is Access.READ_WRITE:
                read_write |= match
            else:
                read_only |= match
        if read_write:
            return Access.READ_WRITE
        return Access.READ_ONLY if read_only else None


def no_permission(name: bytes) -> str:
    """Upstash's wording for a command the token may not run."""
    command = name.decode(errors="replace").lower()
    return f"NOPERM this user has no permissions to run the '{command}' command or its subcommand"


# What Redis answers when a script run as *_RO tries to write, or declares that it writes (7.0).
_READ_ONLY_SCRIPT_ERRORS = ("Write commands are not allowed from read-only scripts", "write flag using *_ro command")
_AS_READ_ONLY = {b"EVAL": b"EVAL_RO", b"EVALSHA": b"EVALSHA_RO", b"FCALL": b"FCALL_RO"}
_ALWAYS = frozenset({b"PING", b"ECHO", b"TIME"})
_NEVER = frozenset({b"SCAN"})


def as_read_only(args: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """A script command in its read-only form (EVAL -> EVAL_RO), so Redis refuses any write inside."""
    read_only = _AS_READ_ONLY.get(args[0].upper())
    return args if read_only is None else (read_only, *args[1:])


def script_write_refused(reply: Reply, name: bytes) -> Reply:
    """Redis' refusal of a write inside a read-only script, in Upstash's NOPERM words."""
    if isinstance(reply, ReplyError) and any(text in str(reply) for text in _READ_ONLY_SCRIPT_ERRORS):
        # named as the caller sent it: the gateway ran EVAL as EVAL_RO on its own account
        return ReplyError(f"{no_permission(name.removesuffix(b'_RO'))} (read-only token: {reply})")
    return reply


class ReadOnlyCommands:
    """The names a read-only token may run (`NAME` or `NAME|SUB`), from Redis' `COMMAND`, loaded once."""

    def __init__(self) -> None:
        self._allowed: frozenset[bytes] = frozenset()
        self._containers: frozenset[bytes] = frozenset()  # commands whose subcommands have their own flags
        self._loaded = False
        self._lock = asyncio.Lock()

    async def load(self, backend: Backend) -> None:
        if self._loaded:
            return
        async with self._lock:
            if not self._loaded:
                (table,) = await backend.pipeline([(b"COMMAND",)])
                if not isinstance(table, list):
                    raise ConnectionError(f"Redis did not answer COMMAND with its command table: {table!r}")
                self._read_table(table)
                self._loaded = True

    def _read_table(self, table: list[Reply]) -> None:
        allowed: set[bytes] = set()
        containers: set[bytes] = set()
        for entry in table:
            if not isinstance(entry, list) or len(entry) < 7 or not isinstance(entry[0], bytes):
                continue
            name = entry[0].upper()
            if _may_read(name, entry):
                allowed.add(name)
            subcommands = entry[9] if len(entry) > 9 and isinstance(entry[9], list) else []
            if subcommands:
                containers.add(name)
            for sub in subcommands:
                if isinstance(sub, list) and len(sub) >= 7 and isinstance(sub[0], bytes) and _may_read(name, sub):
                    allowed.add(sub[0].upper())  # already spelled `name|sub`
        self._allowed = frozenset(allowed | _ALWAYS)
        self._containers = frozenset(containers)

    def refusal(self, args: Sequence[bytes]) -> str | None:
        name = args[0].upper()
        key = name
        if name in self._containers:
            key = name + b"|" + (args[1].upper() if len(args) > 1 else b"")
        return None if key in self._allowed else no_permission(name)


def _may_read(name: bytes, entry: list[Reply]) -> bool:
    flags, categories = entry[2], entry[6]
    if name in _NEVER or not isinstance(flags, list) or not isinstance(categories, list):
        return False
    return b"readonly" in flags and b"@dangerous" not in categories
