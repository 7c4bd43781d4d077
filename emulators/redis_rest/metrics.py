"""The gateway's Prometheus metrics (`GET /__metrics`) and `/__stats` figures, over all its workers.

Counting sits on the hot path of every request, so it is plain Python: int64 slots in this worker's
row of a shared mapping (shared.py), at offsets resolved once (label values cached), no lock (one
writer per row; prometheus-client's own metric objects take a lock per increment and cost 3.2 us a
request on this machine, these about 1 us). A collector sums the rows of every worker and turns them
into prometheus-client metric families when scraped, and the library writes the text format. Figures
other parts already keep (open subscriptions, reconnects) are copied into the row by each worker
(`publish_live`: when a subscription opens or ends, when it answers a scrape, and every 0.1 s, so
another worker's reconnect counts may be 0.1 s old). Every label has a
bounded set of values: command names outside `KNOWN_COMMANDS` count as `other`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from emulators.redis_rest.policy import UPSTASH_COMMANDS
from emulators.redis_rest.pubsub import HubFigures
from emulators.redis_rest.shared import SharedCounters

PREFIX = "stashkit_gateway"
# The classic text format every Prometheus reads (what prometheus-client's own server answers by default);
# our names need none of 1.0.0's escaping.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Endpoint kinds, the `endpoint` label: `path` is Upstash's path form (`GET /get/key`).
ENDPOINTS = ("command", "path", "pipeline", "multi-exec", "subscribe", "psubscribe", "__stats", "__metrics", "unknown")
# From 0.1 ms (a loopback GET) to the default --command-timeout of 30 s.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)
# Why an answer was an error (`errors_total{kind}`): Redis's own error replies are `redis`, one per
# command (a write stopped inside a read-only token's script too); the others are the gateway's answers:
# a malformed body (`bad_request`), another 4xx of its own (`http`: token, path, method, size limits),
# --request-timeout passed (`timeout`, 504), Redis unreachable (503), or a bug (500). Commands the
# gateway refuses without sending them (policy, read-only token, REST rules) are `refused_total`, not errors.
ERROR_KINDS = ("redis", "bad_request", "http", "timeout", "redis_unreachable", "internal")
# Why a command was refused before reaching Redis (`refused_total{reason}`): not in Upstash's table
# (`policy`), beyond a read-only token (`readonly`), a REST rule (`stateful`, `blocking`: commands.py),
# or a request over a size limit (`limit`: counted once per request, as nothing of it runs).
REFUSAL_REASONS = ("policy", "readonly", "stateful", "blocking", "limit")
# Redis 7.0's top-level commands (`COMMAND LIST` of Debian 12's redis-server, which the tests run).
_REDIS_7_0_COMMANDS = """
    ACL APPEND ASKING AUTH BGREWRITEAOF BGSAVE BITCOUNT BITFIELD BITFIELD_RO BITOP BITPOS BLMOVE BLMPOP BLPOP
    BRPOP BRPOPLPUSH BZMPOP BZPOPMAX BZPOPMIN CLIENT CLUSTER COMMAND CONFIG COPY DBSIZE DEBUG DECR DECRBY DEL
    DISCARD DUMP ECHO EVAL EVAL_RO EVALSHA EVALSHA_RO EXEC EXISTS EXPIRE EXPIREAT EXPIRETIME FAILOVER FCALL
    FCALL_RO FLUSHALL FLUSHDB FUNCTION GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER
    GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL HELLO HEXISTS HGET
    HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD HSCAN HSET HSETNX HSTRLEN HVALS INCR INCRBY
    INCRBYFLOAT INFO KEYS LASTSAVE LATENCY LCS LINDEX LINSERT LLEN LMOVE LMPOP LOLWUT LPOP LPOS LPUSH LPUSHX
    LRANGE LREM LSET LTRIM MEMORY MGET MIGRATE MODULE MONITOR MOVE MSET MSETNX MULTI OBJECT PERSIST PEXPIRE
    PEXPIREAT PEXPIRETIME PFADD PFCOUNT PFDEBUG PFMERGE PFSELFTEST PING PSETEX PSUBSCRIBE PSYNC PTTL PUBLISH
    PUBSUB PUNSUBSCRIBE QUIT RANDOMKEY READONLY READWRITE RENAME RENAMENX REPLCONF REPLICAOF RESET RESTORE
    RESTORE-ASKING ROLE RPOP RPOPLPUSH RPUSH RPUSHX SADD SAVE SCAN SCARD SCRIPT SDIFF SDIFFSTORE SELECT SET
    SETBIT SETEX SETNX SETRANGE SHUTDOWN SINTER SINTERCARD SINTERSTORE SISMEMBER SLAVEOF SLOWLOG SMEMBERS
    SMISMEMBER SMOVE SORT SORT_RO SPOP SPUBLISH SRANDMEMBER SREM SSCAN SSUBSCRIBE STRLEN SUBSCRIBE SUBSTR SUNION
    SUNIONSTORE SUNSUBSCRIBE SWAPDB SYNC TIME TOUCH TTL TYPE UNLINK UNSUBSCRIBE UNWATCH WAIT WATCH XACK XADD
    XAUTOCLAIM XCLAIM XDEL XGROUP XINFO XLEN XPENDING XRANGE XREAD XREADGROUP XREVRANGE XSETID XTRIM ZADD ZCARD
    ZCOUNT ZDIFF ZDIFFSTORE ZINCRBY ZINTER ZINTERCARD ZINTERSTORE ZLEXCOUNT ZMPOP ZMSCORE ZPOPMAX ZPOPMIN
    ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK
    ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE ZUNION ZUNIONSTORE
"""
# The values the `command` label may take: Redis 7.0's commands and every command of Upstash's table
# (policy.py: up to Redis 8.2, JSON.*, SEARCH.*), so the label set stays bounded (about 290 values).
KNOWN_COMMANDS = frozenset(_REDIS_7_0_COMMANDS.split()) | frozenset(
    entry.partition("|")[0] for entry in UPSTASH_COMMANDS
)
_NAME_CACHE_LIMIT = 4096  # spellings (`get`, `GET`, `Get`) remembered; beyond it names are upper-cased each time


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What other parts of the gateway keep, read at scrape time."""

    reconnects: int  # the command pools'
    pubsub: HubFigures


# Where each count sits in a worker's row of SharedCounters (shared.py). Statuses 100..599 each have a
# slot, so any status the gateway answers is counted exactly.
COMMAND_LABELS = (*sorted(KNOWN_COMMANDS), "other")
_COMMAND_INDEX = {name: index for index, name in enumerate(COMMAND_LABELS)}
_ENDPOINT_INDEX = {endpoint: index for index, endpoint in enumerate(ENDPOINTS)}
_STATUSES = 500
_BUCKETS = len(LATENCY_BUCKETS_S) + 1  # the last: +Inf
DROP_REASONS = ("slow_reader", "redis_lost")
LIVE_FIELDS = ("serving", "subscribers", "channels", "patterns", "pubsub_reconnects", "reconnects", *DROP_REASONS)
REQUESTS = 0
LATENCY = REQUESTS + len(ENDPOINTS) * _STATUSES
LATENCY_SUM_NS = LATENCY + len(ENDPOINTS) * _BUCKETS
COMMANDS = LATENCY_SUM_NS + len(ENDPOINTS)
ERRORS = COMMANDS + len(COMMAND_LABELS)
REFUSALS = ERRORS + len(ERROR_KINDS)
STATS_REQUESTS = REFUSALS + len(REFUSAL_REASONS)  # /__stats: requests and commands by endpoint
STATS_COMMANDS = STATS_REQUESTS + len(ENDPOINTS)
LIVE = STATS_COMMANDS + len(ENDPOINTS)
ROW_SIZE = LIVE + len(LIVE_FIELDS)


def counters(workers: int = 1) -> SharedCounters:
    """The counters of a gateway of `workers` processes (create them before forking the workers)."""
    return SharedCounters(ROW_SIZE, workers)


class GatewayMetrics:
    """Counts into this worker's row of `shared`; reports the sum over every worker."""

    def __init__(self, read_live: Callable[[], LiveFigures], shared: SharedCounters | None = None) -> None:
        self.shared = shared if shared is not None else counters()
        self._read_live = read_live
        self._names: dict[bytes, int] = {}
        self.serving = False  # set by the gateway between its start-up and its shutdown
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Families(self))  # last: registering collects once

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        row, e = self.shared.row, _ENDPOINT_INDEX[endpoint]
        row[REQUESTS + e * _STATUSES + status - 100] += 1
        row[LATENCY + e * _BUCKETS + bisect_left(LATENCY_BUCKETS_S, seconds)] += 1  # first bucket seconds <= le
        row[LATENCY_SUM_NS + e] += int(seconds * 1e9)

    def counted(self, endpoint: str, commands: int) -> None:
        """A request to a command endpoint and its commands, for /__stats (the round-trip counters)."""
        row, e = self.shared.row, _ENDPOINT_INDEX[endpoint]
        row[STATS_REQUESTS + e] += 1
        row[STATS_COMMANDS + e] += commands

    def commands(self, commands: Iterable[Sequence[bytes]]) -> None:
        names, row = self._names, self.shared.row
        for args in commands:
            index = names.get(args[0])
            if index is None:
                index = self._label(args[0])
            row[COMMANDS + index] += 1

    def _label(self, raw: bytes) -> int:
        name = raw.decode(errors="replace").upper()
        index = _COMMAND_INDEX.get(name, len(COMMAND_LABELS) - 1)  # the last label: other
        if len(self._names) < _NAME_CACHE_LIMIT:
            self._names[raw] = index
        return index

    def error(self, kind: str, count: int = 1) -> None:
        self.shared.row[ERRORS + ERROR_KINDS.index(kind)] += count

    def refused(self, reason: str) -> None:
        """A command refused before reaching Redis; `reason` is one of REFUSAL_REASONS."""
        self.shared.row[REFUSALS + REFUSAL_REASONS.index(reason)] += 1

    def publish_live(self) -> None:
        """Copy this worker's live figures (subscriptions, reconnects) where the other workers read them."""
        live = self._read_live()
        values: tuple[int, ...] = (
            int(self.serving),
            live.pubsub.subscribers,
            live.pubsub.channels,
            live.pubsub.patterns,
        )
        values += (live.pubsub.reconnects, live.reconnects, *(live.pubsub.dropped.get(r, 0) for r in DROP_REASONS))
        self.shared.row[LIVE : LIVE + len(LIVE_FIELDS)] = memoryview(array("q", values))

    def live(self) -> dict[str, int]:
        """The live figures summed over the workers (this one's read now, the others' as last published)."""
        self.publish_live()
        return dict(zip(LIVE_FIELDS, self.shared.totals(LIVE, ROW_SIZE), strict=True))

    def stats(self) -> dict[str, Any]:
        """/__stats's figures over every worker, and what each worker served."""
        totals = self.shared.totals(STATS_REQUESTS, LIVE)
        requests = {e: n for e, n in zip(ENDPOINTS, totals[: len(ENDPOINTS)], strict=True) if n}
        commands = {e: n for e, n in zip(ENDPOINTS, totals[len(ENDPOINTS) :], strict=True) if n}
        live = self.live()
        per_worker = [sum(row) for row in self.shared.rows(STATS_REQUESTS, STATS_COMMANDS)]
        return {
            "requests": requests,
            "commands": commands,
            "total": {"requests": sum(requests.values()), "commands": sum(commands.values())},
            "subscriptions": {"open": live["subscribers"], "channels": live["channels"], "patterns": live["patterns"]},
            "workers": {"count": self.shared.workers, "serving": live["serving"], "requests": per_worker},
        }

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Families(Collector):
    """The counts of every worker as prometheus-client metric families, built at each scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        totals = self._metrics.shared.totals(0, LIVE)
        requests = _counter("requests", "HTTP requests by endpoint and status", ["endpoint", "status"])
        for endpoint in sorted(ENDPOINTS):
            e = _ENDPOINT_INDEX[endpoint]
            for offset, count in enumerate(totals[REQUESTS + e * _STATUSES : REQUESTS + (e + 1) * _STATUSES]):
                if count:
                    requests.add_metric([endpoint, str(100 + offset)], count)
        yield requests
        yield _latency(totals)
        commands = _counter("commands", "Redis commands by name (names Redis does not know: other)", ["command"])
        for name, count in zip(COMMAND_LABELS, totals[COMMANDS:ERRORS], strict=True):
            if count or name == "other":
                commands.add_metric([name], count)
        yield commands
        errors = _counter("errors", "Error answers by kind", ["kind"])
        for kind, count in zip(ERROR_KINDS, totals[ERRORS:REFUSALS], strict=True):
            errors.add_metric([kind], count)
        yield errors
        refused = _counter("refused", "Commands refused before reaching Redis, by reason", ["reason"])
        for reason, count in sorted(zip(REFUSAL_REASONS, totals[REFUSALS:STATS_REQUESTS], strict=True)):
            refused.add_metric([reason], count)
        yield refused
        yield from _live(self._metrics.live())


def _latency(totals: list[int]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        f"{PREFIX}_request_duration_seconds",
        "Time from request to response (a subscription: the stream's life)",
        labels=["endpoint"],
    )
    bounds = [repr(float(b)) for b in LATENCY_BUCKETS_S] + ["+Inf"]  # `le` as Go prints it: 0.0001, 1.0
    for e, endpoint in enumerate(ENDPOINTS):
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, totals[LATENCY + e * _BUCKETS : LATENCY + (e + 1) * _BUCKETS], strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([endpoint], buckets, totals[LATENCY_SUM_NS + e] / 1e9)
    return family


def _counter(name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)


def _live(live: dict[str, int]) -> Iterator[Metric]:
    reconnects = _counter("redis_reconnects", "New Redis connections opened to replace a lost one", ["connection"])
    reconnects.add_metric(["commands"], live["reconnects"])
    reconnects.add_metric(["pubsub"], live["pubsub_reconnects"])
    yield reconnects
    yield GaugeMetricFamily(f"{PREFIX}_subscriptions_open", "Open SSE subscription streams", value=live["subscribers"])
    held = GaugeMetricFamily(
        f"{PREFIX}_pubsub_subscribed", "Channels and patterns held at Redis (summed over workers)", labels=["kind"]
    )
    held.add_metric(["channel"], live["channels"])
    held.add_metric(["pattern"], live["patterns"])
    yield held
    dropped = _counter("subscriptions_dropped", "Subscription streams the gateway ended", ["reason"])
    for reason in DROP_REASONS:
        dropped.add_metric([reason], live[reason])
    yield dropped
