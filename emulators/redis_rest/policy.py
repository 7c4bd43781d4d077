"""Which commands the gateway runs: the commands Upstash supports, and nothing else.

Source of the table: Upstash's compatibility page, repository `upstash/docs` at `ef0ce438`
(2026-08-21). `redis/overall/compatibility.mdx` (published as `docs/redis/overall/compatibility`,
formerly `rediscompatibility`, renamed in upstash/docs#702 on 2026-05-20) says "Upstash supports Redis
client protocol up to version `8.2`" and sends the reader to "every supported Redis command",
`redis/commands/<group>/overview.mdx` (added 2026-08-13): the groups and names below are those pages'
lists, in their order. Where a page lists subcommands only (`CONFIG GET`, `CLIENT ID`, `SCRIPT LOAD`),
only those subcommands run; a bare name (`XGROUP`, `PUBSUB`, `COMMAND`) admits all of its forms.
Argument-level rules that the command pages state are applied too: `CONFIG GET`/`CONFIG SET` see
only `notify-keyspace-events`, and `ACL SETUSER`/`ACL DELUSER` never touch the `default` user (nor
the user the gateway itself logs in as).

A refused command gets `ERR Command is not allowed: <NAME>` (HTTP 400) and never reaches Redis; the
wording is ours, as neither the reference nor Upstash's pages quote theirs. Scripts: a literal
`redis.call('CONFIG', ...)` / `redis.pcall("FLUSHALL")` in the text of `EVAL`, `EVAL_RO`,
`SCRIPT LOAD` or `FUNCTION LOAD` is checked against the same table (the first two literal arguments:
name and subcommand); a name computed at run time (`redis.call(name, ...)`) cannot be known before the
script runs and is not checked. Commands the page lists but a stateless REST call cannot carry
(`SELECT`, `SUBSCRIBE`, `MONITOR`, `MULTI`, ...) pass this table and are refused by `commands.refusal`,
with the reason. `--allow-admin` turns this module off (the stateless-REST refusals stay).

Every check is one frozenset lookup on the upper-cased name (plus one for a subcommand), built once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

_GROUPS: dict[str, str] = {  # group: its names, as the pages list them (`NAME|SUB` = subcommand)
    "Bitmap": "BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS GETBIT SETBIT",
    "Connection": """
        AUTH CLIENT|GETNAME CLIENT|ID CLIENT|INFO CLIENT|LIST CLIENT|SETINFO CLIENT|SETNAME ECHO HELLO PING
        QUIT RESET SELECT
    """,
    "Functions": """
        FCALL FCALL_RO FUNCTION|DELETE FUNCTION|FLUSH FUNCTION|KILL FUNCTION|LIST FUNCTION|LOAD
        FUNCTION|STATS
    """,
    "Generic": """
        COPY DEL DUMP EXISTS EXPIRE EXPIREAT EXPIRETIME KEYS MEMORY|USAGE PERSIST PEXPIRE PEXPIREAT
        PEXPIRETIME PTTL RANDOMKEY RENAME RENAMENX RESTORE SCAN TOUCH TTL TYPE UNLINK WAIT WAITAOF
    """,
    "Geo": """
        GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER GEORADIUSBYMEMBER_RO
        GEOSEARCH GEOSEARCHSTORE
    """,
    "Hash": """
        HDEL HEXISTS HEXPIRE HEXPIREAT HEXPIRETIME HGET HGETALL HGETDEL HGETEX HINCRBY HINCRBYFLOAT HKEYS
        HLEN HMGET HMSET HPERSIST HPEXPIRE HPEXPIREAT HPEXPIRETIME HPTTL HRANDFIELD HSCAN HSET HSETEX HSETNX
        HSTRLEN HTTL HVALS
    """,
    "HyperLogLog": "PFADD PFCOUNT PFMERGE",
    "JSON": """
        JSON.ARRAPPEND JSON.ARRINDEX JSON.ARRINSERT JSON.ARRLEN JSON.ARRPOP JSON.ARRTRIM JSON.CLEAR JSON.DEL
        JSON.DEBUG JSON.FORGET JSON.GET JSON.MERGE JSON.MGET JSON.MSET JSON.NUMINCRBY JSON.NUMMULTBY
        JSON.OBJKEYS JSON.OBJLEN JSON.RESP JSON.SET JSON.STRAPPEND JSON.STRLEN JSON.TOGGLE JSON.TYPE
    """,
    "List": """
        BLMOVE BLMPOP BLPOP BRPOP BRPOPLPUSH LINDEX LINSERT LLEN LMOVE LMPOP LPOP LPOS LPUSH LPUSHX LRANGE
        LREM LSET LTRIM RPOP RPOPLPUSH RPUSH RPUSHX
    """,
    "Pub/Sub": "PSUBSCRIBE PUBLISH PUBSUB PUNSUBSCRIBE SUBSCRIBE UNSUBSCRIBE",
    "Scripting": "EVAL EVAL_RO EVALSHA EVALSHA_RO SCRIPT|EXISTS SCRIPT|FLUSH SCRIPT|KILL SCRIPT|LOAD",
    "Search": """
        SEARCH.CREATE SEARCH.REINDEX SEARCH.DROP SEARCH.DESCRIBE SEARCH.WAITINDEXING SEARCH.LISTINDEXES
        SEARCH.QUERY SEARCH.COUNT SEARCH.AGGREGATE SEARCH.ALIASADD SEARCH.ALIASDEL SEARCH.LISTALIASES
    """,
    "Server": """
        ACL|CAT ACL|DELUSER ACL|GENPASS ACL|GENTOKEN ACL|GETUSER ACL|LIST ACL|LOAD ACL|LOG ACL|RESTTOKEN
        ACL|SAVE ACL|SETUSER ACL|USERS ACL|WHOAMI COMMAND CONFIG|GET CONFIG|SET DBSIZE FLUSHALL FLUSHDB INFO
        MONITOR TIME
    """,
    "Set": """
        SADD SCARD SDIFF SDIFFSTORE SINTER SINTERCARD SINTERSTORE SISMEMBER SMEMBERS SMISMEMBER SMOVE SPOP
        SRANDMEMBER SREM SSCAN SUNION SUNIONSTORE
    """,
    "Sorted Set": """
        BZMPOP BZPOPMAX BZPOPMIN ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE ZINCRBY ZINTER ZINTERCARD ZINTERSTORE
        ZLEXCOUNT ZMPOP ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE
        ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE
        ZREVRANK ZSCAN ZSCORE ZUNION ZUNIONSTORE
    """,
    "Streams": """
        XACK XACKDEL XADD XAUTOCLAIM XCLAIM XDEL XDELEX XGROUP XINFO|CONSUMERS XINFO|GROUPS XINFO|STREAM
        XLEN XPENDING XRANGE XREAD XREADGROUP XREVRANGE XTRIM
    """,
    "String": """
        APPEND DECR DECRBY DELEX DIGEST GET GETDEL GETEX GETRANGE GETSET INCR INCRBY INCRBYFLOAT MGET MSET
        MSETNX PSETEX SET SETEX SETNX SETRANGE STRLEN
    """,
    "Transactions": "DISCARD EXEC MULTI UNWATCH WATCH",
}


# Every entry of the page: `NAME` or `NAME|SUBCOMMAND` (Redis' own spelling for subcommands).
UPSTASH_COMMANDS: tuple[str, ...] = tuple(entry for names in _GROUPS.values() for entry in names.split())
# Names allowed with any arguments, and for the others the subcommands allowed.
COMMANDS: frozenset[bytes] = frozenset(e.encode() for e in UPSTASH_COMMANDS if "|" not in e)
SUBCOMMANDS: dict[bytes, frozenset[bytes]] = {}
for _entry in UPSTASH_COMMANDS:
    if "|" in _entry:
        _name, _sub = _entry.encode().split(b"|")
        SUBCOMMANDS[_name] = SUBCOMMANDS.get(_name, frozenset()) | {_sub}

# The one configuration parameter Upstash exposes (commands/server/config-get.mdx, config-set.mdx).
CONFIG_PARAMETER = b"notify-keyspace-events"
# CONFIG GET answers nothing for a parameter that does not exist; this name stands in for every
# pattern that would reveal something else, so Redis itself gives Upstash's reply (no entries).
_HIDDEN_PARAMETER = b"upstash-gateway-hidden-parameter"
_ACL_USER_COMMANDS = (b"SETUSER", b"DELUSER")

# `redis.call('NAME'` or `redis.pcall("NAME", "SUB"`: the literal command of a script line.
_SCRIPT_CALL = re.compile(
    rb"""redis\s*\.\s*p?call\s*\(\s*(['"])([^'"\\]+)\1(?:\s*,\s*(['"])([^'"\\]*)\3)?""",
    re.IGNORECASE,
)
_SCRIPT_VERDICTS_MAX = 1024  # scripts remembered with their verdict (ratelimit sends the same text each call)


def not_allowed(name: str) -> str:
    return f"ERR Command is not allowed: {name}"


class CommandPolicy:
    """Upstash's command table (or nothing, with `--allow-admin`), checked before Redis sees a command."""

    def __init__(self, *, enabled: bool = True, protected_users: Iterable[str] = ()) -> None:
        self.enabled = enabled
        self._protected_users = frozenset({b"default", *(user.encode() for user in protected_users)})
        # Names that pass with any arguments and need no further look: the hot path's one lookup.
        self.plain: frozenset[bytes] = COMMANDS - {b"EVAL", b"EVAL_RO"}
        self._script_verdicts: dict[bytes, str | None] = {}

    def refusal(self, args: Sequence[bytes]) -> str | None:
        """Why Upstash would not run this command (the text of the error), or None if it would."""
        if not self.enabled:
            return None
        name = args[0].upper()
        if name in self.plain:
            return None
        if name in COMMANDS:  # EVAL, EVAL_RO: allowed, but the script text is checked too
            return self.script_refusal(args[1]) if len(args) > 1 else None
        allowed = SUBCOMMANDS.get(name)
        if allowed is None:
            return not_allowed(_text(name))
        sub = args[1].upper() if len(args) > 1 else b""
        if sub not in allowed:
            return not_allowed(_text(name + b" " + sub).strip())
        return self._argument_refusal(name, sub, args)

    def _argument_refusal(self, name: bytes, sub: bytes, args: Sequence[bytes]) -> str | None:
        if name == b"CONFIG" and sub == b"SET":
            for parameter in args[2::2]:
                if parameter.lower() != CONFIG_PARAMETER:
                    return not_allowed(f"CONFIG SET {_text(parameter)} (only {CONFIG_PARAMETER.decode()} can be set)")
        elif name == b"ACL" and sub in _ACL_USER_COMMANDS:
            users = args[2:3] if sub == b"SETUSER" else args[2:]
            protected = next((user for user in users if user in self._protected_users), None)
            if protected is not None:
                return not_allowed(f"ACL {sub.decode()} {_text(protected)} (this user cannot be modified)")
        elif (name == b"SCRIPT" and sub == b"LOAD") or (name == b"FUNCTION" and sub == b"LOAD"):
            return self.script_refusal(args[-1]) if len(args) > 2 else None
        return None

    def script_refusal(self, script: bytes) -> str | None:
        """A refused command the script calls by a literal name (dynamic names cannot be known)."""
        if script in self._script_verdicts:
            return self._script_verdicts[script]
        verdict = None
        for match in _SCRIPT_CALL.finditer(script):
            called = [match.group(2).upper()] + ([match.group(4)] if match.group(4) else [])
            if len(called) == 1 and called[0] in SUBCOMMANDS:
                continue  # the subcommand is computed at run time: it cannot be known
            reason = self.refusal(called)
            if reason is not None:
                verdict = f"{reason} (called by the script)"
                break
        if len(self._script_verdicts) >= _SCRIPT_VERDICTS_MAX:
            self._script_verdicts.clear()
        self._script_verdicts[script] = verdict
        return verdict

    def rewrite(self, args: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """CONFIG GET sees only notify-keyspace-events, as on Upstash: other patterns match nothing."""
        if not self.enabled or len(args) < 3 or args[0].upper() != b"CONFIG" or args[1].upper() != b"GET":
            return args
        visible = CONFIG_PARAMETER.decode()
        return (
            *args[:2],
            *(
                CONFIG_PARAMETER if fnmatchcase(visible, p.decode(errors="replace").lower()) else _HIDDEN_PARAMETER
                for p in args[2:]
            ),
        )


def needs_rewrite(args: Sequence[bytes]) -> bool:
    return args[0].upper() == b"CONFIG"


def _text(name: bytes) -> str:
    return name.decode(errors="replace")
