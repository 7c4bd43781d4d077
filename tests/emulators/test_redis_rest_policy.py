"""Upstash's command table: every listed command reaches Redis, everything else is refused before it
does (single node and Cluster), scripts calling refused commands included; `--allow-admin` lifts it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from emulators.redis_rest.policy import UPSTASH_COMMANDS
from tests.conftest import Gateway, start_gateway
from tests.servers import Process, RedisCluster

NOT_ALLOWED = "ERR Command is not allowed: "
# Listed commands that would change state when sent bare: a junk option makes Redis refuse them, so
# the walk proves they reach Redis without flushing the shared servers.
DESTRUCTIVE_BARE = {"FLUSHALL", "FLUSHDB", "SCRIPT|FLUSH", "FUNCTION|FLUSH", "ACL|LOAD", "ACL|SAVE"}


@dataclass
class Target:
    gateway: Gateway
    ports: list[int]  # every Redis node behind it, to read INFO commandstats directly

    def post(self, body: Any, path: str = "/") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.gateway.token}"}
        return httpx.post(self.gateway.url + path, json=body, headers=headers, timeout=10)

    def calls(self) -> dict[str, int]:
        """Every call Redis counted, per command: what reached it, refused by Redis or not."""
        totals: dict[str, int] = {}
        for port in self.ports:
            with redis.Redis(port=port) as client:
                for name, stats in client.info("commandstats").items():
                    count = stats["calls"] + stats.get("rejected_calls", 0) + stats.get("failed_calls", 0)
                    totals[name] = totals.get(name, 0) + count
        return totals


@pytest.fixture(scope="module", params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "single":
        node: Process = request.getfixturevalue("redis_node")
        return Target(request.getfixturevalue("gateway"), [node.port])
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return Target(request.getfixturevalue("cluster_gateway"), [n.port for n in cluster.nodes])


def walk_command(entry: str) -> list[str]:
    args = entry.split("|")
    return [*args, "x-policy-walk-not-an-option"] if entry in DESTRUCTIVE_BARE else args


def test_the_table_follows_upstash_pages() -> None:
    assert len(UPSTASH_COMMANDS) == len(set(UPSTASH_COMMANDS)) == 285
    assert {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT|LOAD", "SCRIPT|EXISTS"} <= set(UPSTASH_COMMANDS)
    for refused in ("DEBUG", "MODULE", "SHUTDOWN", "SAVE", "BGSAVE", "REPLICAOF", "SLAVEOF", "OBJECT", "SORT"):
        assert refused not in UPSTASH_COMMANDS
    assert "CONFIG" not in UPSTASH_COMMANDS  # only CONFIG GET and CONFIG SET are listed
    assert {"CONFIG|GET", "CONFIG|SET"} <= set(UPSTASH_COMMANDS)


def test_every_listed_command_reaches_redis(target: Target) -> None:
    """Each entry alone and all of them in one pipeline: Redis may refuse the bare form (arity,
    unknown module command), the REST layer may refuse a connection command, the policy never."""
    refused = []
    for entry in UPSTASH_COMMANDS:
        error = target.post(walk_command(entry)).json().get("error", "")
        if error.startswith(NOT_ALLOWED):
            refused.append((entry, error))
    assert refused == []
    items = target.post([walk_command(entry) for entry in UPSTASH_COMMANDS], "/pipeline").json()
    assert len(items) == len(UPSTASH_COMMANDS)
    assert [item for item in items if item.get("error", "").startswith(NOT_ALLOWED)] == []


def test_listed_commands_really_run(target: Target, tag: str) -> None:
    assert target.post(["SET", f"{tag}k", "v"]).json() == {"result": "OK"}
    assert target.post(["GETDEL", f"{tag}k"]).json() == {"result": "v"}
    assert target.post(["TIME"]).status_code == 200
    assert target.post(["ACL", "WHOAMI"]).json() == {"result": "default"}
    assert target.post(["MEMORY", "USAGE", f"{tag}missing"]).json() == {"result": None}
    assert target.post(["XINFO", "HELP"]).json() == {"error": f"{NOT_ALLOWED}XINFO HELP"}


REFUSED: list[tuple[list[str], str]] = [
    (["CONFIG", "SET", "maxmemory", "1"], "CONFIG SET maxmemory (only notify-keyspace-events can be set)"),
    (["config", "set", "notify-keyspace-events", "", "save", ""], "CONFIG SET save (only"),
    (["CONFIG", "RESETSTAT"], "CONFIG RESETSTAT"),
    (["CONFIG", "REWRITE"], "CONFIG REWRITE"),
    (["CONFIG"], "CONFIG"),
    (["MODULE", "LIST"], "MODULE"),
    (["DEBUG", "SLEEP", "0"], "DEBUG"),
    (["SHUTDOWN", "NOSAVE"], "SHUTDOWN"),
    (["SAVE"], "SAVE"),
    (["BGSAVE"], "BGSAVE"),
    (["BGREWRITEAOF"], "BGREWRITEAOF"),
    (["REPLICAOF", "NO", "ONE"], "REPLICAOF"),
    (["SLAVEOF", "NO", "ONE"], "SLAVEOF"),
    (["SWAPDB", "0", "1"], "SWAPDB"),
    (["MOVE", "k", "1"], "MOVE"),
    (["OBJECT", "ENCODING", "k"], "OBJECT"),
    (["SORT", "k"], "SORT"),
    (["LASTSAVE"], "LASTSAVE"),
    (["SLOWLOG", "GET"], "SLOWLOG"),
    (["LATENCY", "LATEST"], "LATENCY"),
    (["CLUSTER", "INFO"], "CLUSTER"),
    (["FAILOVER"], "FAILOVER"),
    (["SCRIPT", "DEBUG", "YES"], "SCRIPT DEBUG"),
    (["FUNCTION", "DUMP"], "FUNCTION DUMP"),
    (["CLIENT", "KILL", "ID", "1"], "CLIENT KILL"),
    (["CLIENT", "PAUSE", "10"], "CLIENT PAUSE"),
    (["ACL", "DRYRUN", "default", "get", "k"], "ACL DRYRUN"),
    (["ACL", "SETUSER", "default", "off"], "ACL SETUSER default (this user cannot be modified)"),
    (["ACL", "DELUSER", "someone", "default"], "ACL DELUSER default (this user cannot be modified)"),
    (["MEMORY", "DOCTOR"], "MEMORY DOCTOR"),
    (["SPUBLISH", "channel", "m"], "SPUBLISH"),
    (["XSETID", "s", "0-1"], "XSETID"),
    (["LCS", "a", "b"], "LCS"),
    (["SYNC"], "SYNC"),
    (["no-such-command", "x"], "NO-SUCH-COMMAND"),
]


def commandstat(args: list[str]) -> str:
    name = args[0].lower()
    return f"cmdstat_{name}|{args[1].lower()}" if len(args) > 1 else f"cmdstat_{name}"


def test_refused_commands_get_400_and_never_reach_redis(target: Target) -> None:
    before = target.calls()
    for args, shown in REFUSED:
        response = target.post(args)
        assert response.status_code == 400, args
        assert response.json()["error"].startswith(NOT_ALLOWED + shown), args
    after = target.calls()
    for args, _ in REFUSED:
        for name in (commandstat(args), f"cmdstat_{args[0].lower()}"):
            assert after.get(name, 0) == before.get(name, 0), args


def test_refused_command_in_a_pipeline_fails_alone_and_in_a_transaction_stops_all(target: Target, tag: str) -> None:
    items = target.post([["SET", f"{tag}a", "1"], ["DEBUG", "SLEEP", "0"], ["GET", f"{tag}a"]], "/pipeline").json()
    assert items == [{"result": "OK"}, {"error": f"{NOT_ALLOWED}DEBUG"}, {"result": "1"}]
    response = target.post([["SET", f"{tag}b", "1"], ["OBJECT", "ENCODING", f"{tag}b"]], "/multi-exec")
    assert response.status_code == 400
    assert response.json() == {"error": f"{NOT_ALLOWED}OBJECT"}
    assert target.post(["EXISTS", f"{tag}b"]).json() == {"result": 0}


def test_path_style_commands_are_checked_too(target: Target) -> None:
    response = httpx.get(f"{target.gateway.url}/debug/sleep/0", params={"_token": target.gateway.token})
    assert response.status_code == 400
    assert response.json() == {"error": f"{NOT_ALLOWED}DEBUG"}


def test_config_shows_and_sets_only_keyspace_notifications(target: Target) -> None:
    assert target.post(["CONFIG", "GET", "maxmemory"]).json() == {"result": []}
    assert target.post(["CONFIG", "GET", "requirepass", "dir"]).json() == {"result": []}
    everything = target.post(["CONFIG", "GET", "*"]).json()["result"]
    assert everything[0] == "notify-keyspace-events"
    assert len(everything) == 2
    try:
        assert target.post(["CONFIG", "SET", "notify-keyspace-events", "Ex"]).json() == {"result": "OK"}
        assert target.post(["CONFIG", "GET", "notify-*"]).json() == {"result": ["notify-keyspace-events", "xE"]}
    finally:
        target.post(["CONFIG", "SET", "notify-keyspace-events", ""])


def test_scripts_calling_a_refused_command_by_name_are_refused_before_running(target: Target, tag: str) -> None:
    target.post(["SET", f"{tag}k", "v"])
    cases = [
        ["EVAL", "return redis.pcall(\"MOVE\", KEYS[1], '1')", "1", f"{tag}k"],
        ["EVAL_RO", "return redis.call( 'object' , 'encoding', KEYS[1])", "1", f"{tag}k"],
        ["SCRIPT", "LOAD", "redis.call('GET', KEYS[1]); return redis.call('SORT', KEYS[1])"],
        [
            "FUNCTION",
            "LOAD",
            "#!lua name=gwpolicy\nredis.register_function('f', function(k) return redis.call('LCS', k[1], k[1]) end)",
        ],
    ]
    for args in cases:
        response = target.post(args)
        assert response.status_code == 400, args
        assert response.json()["error"].startswith(NOT_ALLOWED), args
        assert response.json()["error"].endswith("(called by the script)"), args
    assert target.post(["GET", f"{tag}k"]).json() == {"result": "v"}  # MOVE never ran
    allowed = ["EVAL", "redis.call('SET', KEYS[1], 'w'); return redis.call(ARGV[1])", "1", f"{tag}k", "PING"]
    assert target.post(allowed).json() == {"result": "PONG"}  # a computed name cannot be known: Redis decides


@pytest.fixture(scope="module")
def admin_gateway(redis_node: Process) -> Iterator[Gateway]:
    handle = start_gateway(f"redis://127.0.0.1:{redis_node.port}", "--allow-admin")
    yield handle
    handle.process.stop()


def test_allow_admin_runs_every_command_redis_knows(admin_gateway: Gateway, tag: str) -> None:
    target = Target(admin_gateway, [])
    # Sent to Redis, which has its own say (enable-debug-command is off by default since 7.0).
    assert "DEBUG command not allowed" in target.post(["DEBUG", "SLEEP", "0"]).json()["error"]
    assert target.post(["CONFIG", "GET", "maxmemory"]).json()["result"][0] == "maxmemory"
    target.post(["SET", f"{tag}k", "12"])
    assert target.post(["OBJECT", "ENCODING", f"{tag}k"]).json() == {"result": "int"}
    # The stateless-REST refusals stay: a pooled connection must not change database.
    assert "SELECT is not supported" in target.post(["SELECT", "1"]).json()["error"]
