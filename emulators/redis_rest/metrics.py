"""The gateway's Prometheus metrics (`GET /__metrics`), in a registry of each gateway's own.

Counting sits on the hot path of every request, so it is plain Python: integers in dicts and a list of
bucket counts per endpoint, with the label values resolved once and cached (the gateway is one asyncio
thread, so no lock is needed; prometheus-client's own metric objects take a lock per increment and cost
3.2 us a request on this machine, these 1.3 us). A collector turns them into prometheus-client metric families
when scraped, and the library writes the text format. Figures other parts already keep (open
subscriptions, reconnects) are read at scrape time too. Every label has a bounded set of values:
command names outside `KNOWN_COMMANDS` count as `other`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from emulators.redis_rest.policy import UPSTASH_COMMANDS
from emulators.redis_rest.pubsub import HubFigures

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


@dataclass(slots=True)
class _Latency:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))  # the last: +Inf
    sum_s: float = 0.0


class GatewayMetrics:
    def __init__(self, read_live: Callable[[], LiveFigures]) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency = {endpoint: _Latency() for endpoint in ENDPOINTS}
        self.commands_by_name: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self._names: dict[bytes, str] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Families(self, read_live))  # last: registering collects once

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        latency = self.latency[endpoint]
        latency.counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1  # the first bucket with seconds <= le
        latency.sum_s += seconds

    def commands(self, commands: Iterable[Sequence[bytes]]) -> None:
        names, counts = self._names, self.commands_by_name
        for args in commands:
            name = names.get(args[0])
            if name is None:
                name = self._label(args[0])
            counts[name] += 1

    def _label(self, raw: bytes) -> str:
        name = raw.decode(errors="replace").upper()
        label = name if name in KNOWN_COMMANDS else "other"
        if len(self._names) < _NAME_CACHE_LIMIT:
            self._names[raw] = label
        return label

    def error(self, kind: str, count: int = 1) -> None:
        self.errors[kind] += count

    def refused(self, reason: str) -> None:
        """A command refused before reaching Redis; `reason` is one of REFUSAL_REASONS."""
        self.refusals[reason] += 1

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Families(Collector):
    """The counts as prometheus-client metric families, built at each scrape."""

    def __init__(self, metrics: GatewayMetrics, read_live: Callable[[], LiveFigures]) -> None:
        self._metrics = metrics
        self._read_live = read_live

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = _counter("requests", "HTTP requests by endpoint and status", ["endpoint", "status"])
        for (endpoint, status), count in sorted(m.requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        yield requests
        yield self._latency()
        commands = _counter("commands", "Redis commands by name (names Redis does not know: other)", ["command"])
        for name, count in sorted({"other": 0, **m.commands_by_name}.items()):
            commands.add_metric([name], count)
        yield commands
        errors = _counter("errors", "Error answers by kind", ["kind"])
        for kind in ERROR_KINDS:
            errors.add_metric([kind], m.errors[kind])
        yield errors
        refused = _counter("refused", "Commands refused before reaching Redis, by reason", ["reason"])
        for reason in sorted({*REFUSAL_REASONS, *m.refusals}):
            refused.add_metric([reason], m.refusals[reason])
        yield refused
        yield from _live(self._read_live())

    def _latency(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to response (a subscription: the stream's life)",
            labels=["endpoint"],
        )
        bounds = [repr(float(b)) for b in LATENCY_BUCKETS_S] + ["+Inf"]  # `le` as Go prints it: 0.0001, 1.0
        for endpoint, latency in self._metrics.latency.items():
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, latency.counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            family.add_metric([endpoint], buckets, latency.sum_s)
        return family


def _counter(name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, labels=labels)


def _live(live: LiveFigures) -> Iterator[Metric]:
    reconnects = _counter("redis_reconnects", "New Redis connections opened to replace a lost one", ["connection"])
    reconnects.add_metric(["commands"], live.reconnects)
    reconnects.add_metric(["pubsub"], live.pubsub.reconnects)
    yield reconnects
    yield GaugeMetricFamily(
        f"{PREFIX}_subscriptions_open", "Open SSE subscription streams", value=live.pubsub.subscribers
    )
    held = GaugeMetricFamily(f"{PREFIX}_pubsub_subscribed", "Channels and patterns held at Redis", labels=["kind"])
    held.add_metric(["channel"], live.pubsub.channels)
    held.add_metric(["pattern"], live.pubsub.patterns)
    yield held
    dropped = _counter("subscriptions_dropped", "Subscription streams the gateway ended", ["reason"])
    for reason in ("slow_reader", "redis_lost"):
        dropped.add_metric([reason], live.pubsub.dropped.get(reason, 0))
    yield dropped
