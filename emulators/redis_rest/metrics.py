"""The gateway's Prometheus metrics (`GET /__metrics`), in a registry of each gateway's own.

Counting sits on the hot path of every request, so label children are looked up once and cached:
a request costs a dict lookup, a counter increment and a histogram observation. Figures that other
parts already keep (open subscriptions, reconnects) are read only when the metrics are scraped.
Every label has a bounded set of values: command names outside `KNOWN_COMMANDS` count as `other`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from emulators.redis_rest.pubsub import HubFigures

PREFIX = "stashkit_gateway"
# The classic text format every Prometheus reads (what prometheus-client's own server answers by default);
# our names need none of 1.0.0's escaping.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Endpoint kinds, the `endpoint` label: `path` is Upstash's path form (`GET /get/key`).
ENDPOINTS = ("command", "path", "pipeline", "multi-exec", "subscribe", "psubscribe", "__stats", "__metrics", "unknown")
# From 0.1 ms (a loopback GET) to the default --command-timeout of 30 s.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)
# Why the gateway answered an error itself (`errors_total{kind}`); Redis's own error replies are `redis`.
ERROR_KINDS = ("redis", "bad_request", "http", "redis_unreachable", "internal")

# Redis 7.0's top-level commands (`COMMAND LIST`) plus the hash-field-expiry commands of 7.4 and 8.0:
# the values the `command` label may take.
_KNOWN_COMMANDS_TEXT = """
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
    HEXPIRE HEXPIREAT HEXPIRETIME HPERSIST HPEXPIRE HPEXPIREAT HPEXPIRETIME HPTTL HTTL HGETDEL HGETEX HSETEX
"""
KNOWN_COMMANDS = frozenset(_KNOWN_COMMANDS_TEXT.split())
_NAME_CACHE_LIMIT = 4096  # spellings (`get`, `GET`, `Get`) remembered; beyond it names are upper-cased each time


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What other parts of the gateway keep, read at scrape time."""

    reconnects: int  # the command pools'
    pubsub: HubFigures


class _Live(Collector):
    def __init__(self, read: Callable[[], LiveFigures]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        live = self._read()
        reconnects = CounterMetricFamily(
            f"{PREFIX}_redis_reconnects",
            "New Redis connections opened to replace one that was lost",
            labels=["connection"],
        )
        reconnects.add_metric(["commands"], live.reconnects)
        reconnects.add_metric(["pubsub"], live.pubsub.reconnects)
        yield reconnects
        yield GaugeMetricFamily(
            f"{PREFIX}_subscriptions_open", "Open SSE subscription streams", value=live.pubsub.subscribers
        )
        held = GaugeMetricFamily(
            f"{PREFIX}_pubsub_subscribed", "Channels and patterns the gateway holds at Redis", labels=["kind"]
        )
        held.add_metric(["channel"], live.pubsub.channels)
        held.add_metric(["pattern"], live.pubsub.patterns)
        yield held
        dropped = CounterMetricFamily(
            f"{PREFIX}_subscriptions_dropped", "Subscription streams the gateway ended", labels=["reason"]
        )
        for reason in ("slow_reader", "redis_lost"):
            dropped.add_metric([reason], live.pubsub.dropped.get(reason, 0))
        yield dropped


class GatewayMetrics:
    def __init__(self, read_live: Callable[[], LiveFigures]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            f"{PREFIX}_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to response (a subscription: the stream's life)",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        commands = Counter(f"{PREFIX}_commands", "Redis commands by name", ["command"], registry=self.registry)
        errors = Counter(f"{PREFIX}_errors", "Error answers by kind", ["kind"], registry=self.registry)
        self._refused = Counter(
            f"{PREFIX}_refused", "Commands refused before reaching Redis, by reason", ["reason"], registry=self.registry
        )
        self.registry.register(_Live(read_live))
        self._requests_family = requests
        self._requests: dict[tuple[str, int], Counter] = {}
        self._duration = {endpoint: duration.labels(endpoint) for endpoint in ENDPOINTS}
        self._commands_family = commands
        self._other = commands.labels("other")
        self._by_name: dict[bytes, Counter] = {}
        self._errors = {kind: errors.labels(kind) for kind in ERROR_KINDS}
        self._refusals: dict[str, Counter] = {}

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        child = self._requests.get((endpoint, status))
        if child is None:
            child = self._requests[(endpoint, status)] = self._requests_family.labels(endpoint, str(status))
        child.inc()
        self._duration[endpoint].observe(seconds)

    def commands(self, commands: Iterable[Sequence[bytes]]) -> None:
        by_name = self._by_name
        for args in commands:
            child = by_name.get(args[0])
            if child is None:
                child = self._name_child(args[0])
            child.inc()

    def _name_child(self, raw: bytes) -> Counter:
        name = raw.decode(errors="replace").upper()
        child = self._commands_family.labels(name) if name in KNOWN_COMMANDS else self._other
        if len(self._by_name) < _NAME_CACHE_LIMIT:
            self._by_name[raw] = child
        return child

    def error(self, kind: str, count: int = 1) -> None:
        self._errors[kind].inc(count)

    def refused(self, reason: str) -> None:
        """A command refused before reaching Redis; `reason` is a short fixed word (`blocking`, `stateful`)."""
        child = self._refusals.get(reason)
        if child is None:
            child = self._refusals[reason] = self._refused.labels(reason)
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
