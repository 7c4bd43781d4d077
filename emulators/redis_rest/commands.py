"""From Upstash's JSON command arrays to Redis commands: argument conversion, the commands a stateless
HTTP call cannot carry, and the `#!lua flags=allow-key-locking` rewrite (upstash-redis-rest.md §5, §11, §12.4).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

from emulators.redis_rest.resp import Reply


class BadRequest(Exception):
    """The request cannot be turned into Redis commands; answered 400 with `str(self)` as the error."""


def _number_literal(text: str) -> str:
    # Keep a JSON number exactly as the client wrote it: `1e+20` stays `1e+20`, and integers wider
    # than 64 bits are not rounded through a float (§5).
    return text


def _reject_constant(name: str) -> object:
    raise BadRequest(f"ERR {name} is not valid JSON: send numbers as finite literals or strings")


# Built once: `json.loads` with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_int=_number_literal, parse_float=_number_literal, parse_constant=_reject_constant)


def parse_json(body: bytes) -> object:
    try:
        # What json.loads does with bytes: UTF-8, -16 or -32 by the first bytes, lone surrogates kept.
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"ERR the request body is not valid JSON: {exc}") from exc


def to_argument(value: object, index: int) -> bytes:
    """One JSON element as a Redis bulk string.

    Booleans become `true`/`false`, their JSON text (what JavaScript clients send as strings too);
    the Python SDK sends a `bool` as JSON `true` (§5, G8). null, arrays and objects are refused.
    """
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise BadRequest(f"ERR argument {index} is not valid UTF-8 text") from exc
    kind = {type(None): "null", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
    raise BadRequest(f"ERR argument {index} is {kind}: only strings, numbers and booleans are accepted")


def to_command(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise BadRequest('ERR a command must be a JSON array of strings and numbers, like ["GET","key"]')
    if not value:
        raise BadRequest("ERR empty command")
    try:  # hot path: every element is text (numbers arrive as their literal text, see parse_json)
        return tuple([item.encode() for item in value])
    except (AttributeError, UnicodeEncodeError):
        return tuple(to_argument(item, index) for index, item in enumerate(value))


def to_commands(value: object) -> list[tuple[bytes, ...]]:
    if not isinstance(value, list):
        raise BadRequest("ERR a pipeline or transaction must be a JSON array of command arrays")
    return [to_command(item) for item in value]


def command_name(args: Sequence[bytes]) -> str:
    return args[0].decode(errors="replace").upper()


# Commands that depend on state kept on one connection between calls, or that hold a connection open:
# a REST call gets a pooled connection for one request only (Upstash refuses them too: §11).
_STATEFUL = "connection state does not survive between REST calls"
REFUSED: dict[str, str] = {
    **dict.fromkeys(
        ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"],
        "subscriptions need a long-lived connection: use POST /subscribe/<channel> (server-sent events)",
    ),
    **dict.fromkeys(["MONITOR", "SYNC", "PSYNC", "REPLCONF"], "it needs a long-lived connection"),
    **dict.fromkeys(["SELECT", "AUTH", "HELLO", "CLIENT", "RESET", "QUIT", "READONLY", "READWRITE"], _STATEFUL),
    **dict.fromkeys(["MULTI", "EXEC", "DISCARD"], "send the whole transaction to /multi-exec"),
    **dict.fromkeys(["WATCH", "UNWATCH"], "WATCH needs a connection held between calls; use a Lua script"),
    "SHUTDOWN": "the server is not managed through the gateway",
}

# Blocking commands and where their timeout sits. The SDK has no client timeout (G9), so a block
# without a bound would hang the caller forever: 0 ("forever") and waits above the cap are refused.
_TIMEOUT_LAST_S = {"BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"}
_TIMEOUT_FIRST_S = {"BLMPOP", "BZMPOP"}
_TIMEOUT_LAST_MS = {"WAIT", "WAITAOF"}


def blocking_timeout_s(name: str, args: Sequence[bytes]) -> float | None:
    """The wait a blocking command asks for, in seconds (0 = forever); None if it does not block."""
    raw: bytes | None = None
    scale = 1.0
    if name in _TIMEOUT_LAST_S and len(args) > 1:
        raw = args[-1]
    elif name in _TIMEOUT_FIRST_S and len(args) > 1:
        raw = args[1]
    elif name in _TIMEOUT_LAST_MS and len(args) > 1:
        raw, scale = args[-1], 0.001
    elif name in ("XREAD", "XREADGROUP"):
        upper = [arg.upper() for arg in args]
        if b"BLOCK" in upper and upper.index(b"BLOCK") + 1 < len(args):
            raw, scale = args[upper.index(b"BLOCK") + 1], 0.001
    if raw is None:
        return None
    try:
        return float(raw) * scale
    except ValueError:
        return None  # let Redis answer its own "timeout is not a float" error


class Refusal(NamedTuple):
    reason: str  # a short fixed word, the `reason` label of the gateway's refused-commands metric
    message: str  # the error the caller gets


def refusal(args: Sequence[bytes], max_block_s: float) -> Refusal | None:
    """Why this command cannot run through the gateway, or None if it can."""
    name = command_name(args)
    if name in REFUSED:
        return Refusal("stateful", f"ERR {name} is not supported over REST: {REFUSED[name]}")
    timeout_s = blocking_timeout_s(name, args)
    if timeout_s is not None and (timeout_s == 0 or timeout_s > max_block_s):
        return Refusal(
            "blocking",
            f"ERR {name} would block {'forever' if timeout_s == 0 else f'{timeout_s:g}s'}: "
            f"over REST a blocking command needs a timeout of at most {max_block_s:g}s",
        )
    return None


SHEBANG = b"#!lua"
UPSTASH_ONLY_FLAGS = {b"allow-key-locking"}


def rewrite_shebang(script: bytes, redis_major: int) -> bytes:
    """Make an Upstash script acceptable to a stock redis-server (G11).

    Redis 7 rejects the Upstash-only flag `allow-key-locking`, so it is dropped from `flags=`.
    Redis 6 has no shebang support at all, so the line becomes a Lua comment (line numbers kept).
    """
    if not script.startswith(SHEBANG):
        return script
    first, newline, rest = script.partition(b"\n")
    if redis_major < 7:
        return b"--" + first[2:] + newline + rest
    words = first.split()
    kept = [words[0]]
    for word in words[1:]:
        if word.startswith(b"flags="):
            flags = [f for f in word[len(b"flags=") :].split(b",") if f and f not in UPSTASH_ONLY_FLAGS]
            if flags:
                kept.append(b"flags=" + b",".join(flags))
        else:
            kept.append(word)
    return b" ".join(kept) + newline + rest


def sha1_hex(script: bytes) -> bytes:
    return hashlib.sha1(script, usedforsecurity=False).hexdigest().encode()


class Prepared(NamedTuple):  # a NamedTuple: built once per command on the hot path, and cheap to build
    """A command ready for Redis, or the reason it was refused before reaching Redis."""

    args: tuple[bytes, ...]
    refused: str | None = None
    # SCRIPT LOAD of a rewritten script answers the sha1 of the text the caller sent, so a hash the
    # client computed itself keeps working with EVALSHA (§12.4).
    reply_override: bytes | None = None
    refused_because: str = ""  # Refusal.reason, for the metrics

    def finish(self, reply: Reply) -> Reply:
        if self.reply_override is not None and isinstance(reply, bytes):
            return self.reply_override
        return reply


class ScriptRegistry:
    """Maps the sha1 of each script a caller sent to the sha1 of the text Redis actually cached."""

    def __init__(self) -> None:
        self._cached_sha: dict[bytes, bytes] = {}

    def rewrite(self, script: bytes, redis_major: int) -> tuple[bytes, bytes]:
        """(text for Redis, sha1 of the original text)."""
        original_sha = sha1_hex(script)
        rewritten = rewrite_shebang(script, redis_major)
        if rewritten is not script:
            self._cached_sha[original_sha] = sha1_hex(rewritten)
        return rewritten, original_sha

    def translate(self, sha: bytes) -> bytes:
        return self._cached_sha.get(sha.lower(), sha)


_SCRIPTING = {"EVAL", "EVAL_RO", "EVALSHA", "EVALSHA_RO", "SCRIPT"}
# Every command name `prepare` does anything about; all others pass through untouched.
SPECIAL = {
    name.encode()
    for name in (*REFUSED, *_TIMEOUT_LAST_S, *_TIMEOUT_FIRST_S, *_TIMEOUT_LAST_MS, "XREAD", "XREADGROUP", *_SCRIPTING)
}


def is_special(args: Sequence[bytes]) -> bool:
    """Whether `prepare` would do anything to this command; most commands pass through untouched."""
    return args[0].upper() in SPECIAL


def prepare(args: tuple[bytes, ...], scripts: ScriptRegistry, redis_major: int, max_block_s: float) -> Prepared:
    if not is_special(args):
        return Prepared(args)
    refused = refusal(args, max_block_s)
    if refused is not None:
        return Prepared(args, refused=refused.message, refused_because=refused.reason)
    name = command_name(args)
    if name in ("EVAL", "EVAL_RO") and len(args) > 1:
        script, _ = scripts.rewrite(args[1], redis_major)
        return Prepared((args[0], script, *args[2:]))
    if name in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
        return Prepared((args[0], scripts.translate(args[1]), *args[2:]))
    if name == "SCRIPT" and len(args) > 2:
        sub = args[1].upper()
        if sub == b"LOAD":
            script, original_sha = scripts.rewrite(args[2], redis_major)
            return Prepared((*args[:2], script, *args[3:]), reply_override=original_sha)
        if sub == b"EXISTS":
            return Prepared((*args[:2], *(scripts.translate(sha) for sha in args[2:])))
    return Prepared(args)


def needs_version(args: Sequence[bytes]) -> bool:
    """Whether preparing this command depends on the Redis version (it carries a `#!` script)."""
    name = args[0].upper()
    if name in (b"EVAL", b"EVAL_RO"):
        return len(args) > 1 and args[1].startswith(SHEBANG)
    return name == b"SCRIPT" and len(args) > 2 and args[1].upper() == b"LOAD" and args[2].startswith(SHEBANG)
