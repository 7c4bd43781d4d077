"""The gateway's Prometheus metrics at `GET /__metrics`: what each request, command, error and refusal
adds, read back with prometheus-client's own parser."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from emulators.redis_rest.app import Gateway as GatewayApp
from emulators.redis_rest.app import Settings
from emulators.redis_rest.backend import Limits, RedisAddress, SingleNode
from emulators.redis_rest.pubsub import PubSubHub
from emulators.redis_rest.tokens import Tokens
from tests.conftest import Gateway, start_gateway
from tests.servers import Process, redis_server

METRICS_TOKEN = "test-metrics-token"
READ_ONLY = "test-read-only-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def node() -> Iterator[Process]:
    process = redis_server().start()
    yield process
    process.stop()


@pytest.fixture
def gateway(node: Process) -> Iterator[Gateway]:
    """A fresh gateway per test, so every count starts at zero."""
    handle = start_gateway(f"redis://127.0.0.1:{node.port}", "--metrics-token", METRICS_TOKEN)
    yield handle
    handle.process.stop()


@pytest.fixture
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.token}"}) as client:
        yield client


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(gateway: Gateway, token: str = METRICS_TOKEN) -> Samples:
    response = httpx.get(f"{gateway.url}/__metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"stashkit_gateway_{name}", frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_endpoint_and_status_with_their_latency(
    gateway: Gateway, http: httpx.Client, tag: str
) -> None:
    for _ in range(3):
        assert http.post("/", json=["SET", f"{tag}k", "v"]).status_code == 200
    assert http.post("/pipeline", json=[["GET", f"{tag}k"], ["INCR", f"{tag}k"]]).status_code == 200
    assert http.post("/multi-exec", json=[["GET", f"{tag}k"]]).status_code == 200
    assert http.get(f"/get/{tag}k").status_code == 200
    assert http.post("/", json=["GET"]).status_code == 400  # Redis: wrong number of arguments
    assert http.post("/", content=b"not json").status_code == 400
    assert httpx.post(gateway.url, json=["GET", "k"]).status_code == 401
    assert http.get("/__stats").status_code == 200

    samples = scrape(gateway)
    assert value(samples, "requests_total", endpoint="command", status="200") == 3
    assert value(samples, "requests_total", endpoint="command", status="400") == 2
    assert value(samples, "requests_total", endpoint="command", status="401") == 1
    assert value(samples, "requests_total", endpoint="pipeline", status="200") == 1
    assert value(samples, "requests_total", endpoint="multi-exec", status="200") == 1
    assert value(samples, "requests_total", endpoint="path", status="200") == 1
    assert value(samples, "requests_total", endpoint="__stats", status="200") == 1
    assert value(samples, "request_duration_seconds_count", endpoint="command") == 6
    assert value(samples, "request_duration_seconds_bucket", endpoint="command", le="+Inf") == 6
    assert value(samples, "request_duration_seconds_sum", endpoint="command") > 0
    # Errors: Redis's own error reply (the pipeline's INCR of a non-number too), a malformed body, no token.
    assert value(samples, "errors_total", kind="redis") == 2
    assert value(samples, "errors_total", kind="bad_request") == 1
    assert value(samples, "errors_total", kind="http") == 1
    assert value(samples, "errors_total", kind="redis_unreachable") == 0


def test_commands_are_counted_by_name_and_unknown_names_share_one_label(
    gateway: Gateway, http: httpx.Client, tag: str
) -> None:
    http.post("/", json=["set", f"{tag}k", "1"])
    http.post("/pipeline", json=[["GET", f"{tag}k"], ["Get", f"{tag}k"], ["INCR", f"{tag}k"]])
    http.post("/multi-exec", json=[["INCR", f"{tag}k"], ["GET", f"{tag}k"]])
    for name in ("NOSUCHCOMMAND", "ANOTHER-ONE", "\u2603"):
        http.post("/", json=[name])

    samples = scrape(gateway)
    assert value(samples, "commands_total", command="SET") == 1
    assert value(samples, "commands_total", command="GET") == 3
    assert value(samples, "commands_total", command="INCR") == 2
    assert value(samples, "commands_total", command="other") == 3
    names = {dict(labels)["command"] for name, labels in samples if name == "stashkit_gateway_commands_total"}
    assert names == {"SET", "GET", "INCR", "other"}


def test_refused_commands_are_counted_by_reason(gateway: Gateway, http: httpx.Client, tag: str) -> None:
    assert http.post("/", json=["BLPOP", f"{tag}l", "0"]).status_code == 400
    assert http.post("/", json=["SELECT", "1"]).status_code == 400
    http.post("/pipeline", json=[["WATCH", f"{tag}k"], ["GET", f"{tag}k"], ["BRPOP", f"{tag}l", "3600"]])
    http.post("/multi-exec", json=[["SUBSCRIBE", "c"]])

    samples = scrape(gateway)
    assert value(samples, "refused_total", reason="blocking") == 2
    assert value(samples, "refused_total", reason="stateful") == 3


def test_open_subscriptions_are_a_gauge(gateway: Gateway, tag: str) -> None:
    headers = {"Authorization": f"Bearer {gateway.token}"}
    with (
        httpx.Client(base_url=gateway.url, headers=headers) as client,
        client.stream("POST", f"/subscribe/{tag}a/{tag}b") as first,
        client.stream("POST", f"/psubscribe/{tag}*") as second,
    ):
        lines = first.iter_lines(), second.iter_lines()  # kept: a dropped iterator closes its response
        assert [next(stream) for stream in lines] == [f"data: subscribe,{tag}a,1", f"data: psubscribe,{tag}*,1"]
        samples = scrape(gateway)
        assert value(samples, "subscriptions_open") == 2
        assert value(samples, "pubsub_subscribed", kind="channel") == 2
        assert value(samples, "pubsub_subscribed", kind="pattern") == 1
        assert value(samples, "requests_total", endpoint="subscribe", status="200") == 0  # counted when it ends
    deadline = time.monotonic() + 10
    while gateway.stats()["subscriptions"]["open"]:  # the clients' close reaches the gateway a moment later
        assert time.monotonic() < deadline
        time.sleep(0.02)
    samples = scrape(gateway)
    assert value(samples, "subscriptions_open") == 0
    assert value(samples, "requests_total", endpoint="subscribe", status="200") == 1
    assert value(samples, "requests_total", endpoint="psubscribe", status="200") == 1


def test_redis_reconnects_are_counted() -> None:
    node = redis_server().start()
    gateway = start_gateway(f"redis://127.0.0.1:{node.port}")
    headers = {"Authorization": f"Bearer {gateway.token}"}
    try:
        with httpx.Client(base_url=gateway.url, headers=headers) as http:
            assert http.post("/", json=["PING"]).status_code == 200
            node.stop()
            assert http.post("/", json=["PING"]).status_code == 503
            node = redis_server(node.port).start()
            assert http.post("/", json=["PING"]).status_code == 200
        samples = scrape(gateway, gateway.token)
        assert value(samples, "redis_reconnects_total", connection="commands") == 1
        assert value(samples, "errors_total", kind="redis_unreachable") == 1
        assert value(samples, "requests_total", endpoint="command", status="503") == 1
    finally:
        gateway.process.stop()
        node.stop()


def test_metrics_take_the_gateway_token_or_the_metrics_token_and_nothing_else(gateway: Gateway) -> None:
    assert scrape(gateway, gateway.token)
    assert scrape(gateway, METRICS_TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{gateway.url}/__metrics", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "Unauthorized"}
    # The metrics token opens nothing else.
    refused = httpx.post(gateway.url, json=["GET", "k"], headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert refused.status_code == 401
    assert httpx.get(f"{gateway.url}/__stats", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 401
    post = httpx.post(f"{gateway.url}/__metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert post.status_code == 405


def test_gateways_in_one_process_keep_separate_metrics() -> None:
    """Each gateway has its own registry: two in one process (as in a test) do not collide."""

    def build() -> GatewayApp:
        address = RedisAddress.parse("redis://127.0.0.1:1")
        hub = PubSubHub("127.0.0.1", 1, connect_timeout_s=1, timeout_s=1)
        return GatewayApp(SingleNode(address, Limits()), Settings(tokens=Tokens(["t"])), hub)

    first, second = build(), build()
    first.metrics.request("command", 200, 0.001)
    first.metrics.commands([(b"GET", b"k")])
    assert value(parse(first.metrics.exposition().decode()), "requests_total", endpoint="command", status="200") == 1
    assert value(parse(second.metrics.exposition().decode()), "requests_total", endpoint="command", status="200") == 0
    assert value(parse(second.metrics.exposition().decode()), "commands_total", command="GET") == 0


def send_half_a_body(gateway: Gateway) -> bytes:
    """A request whose body never finishes arriving: the gateway answers it at --request-timeout."""
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gateway.token}\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b'["GET",')
        reply = b""
        while not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_policy_read_only_and_limit_refusals_and_timeouts_are_counted(node: Process, tag: str) -> None:
    gateway = start_gateway(
        f"redis://127.0.0.1:{node.port}",
        *("--readonly-token", READ_ONLY, "--max-pipeline-commands", "3", "--max-command-args", "4"),
        *("--max-body-bytes", "300", "--request-timeout", "0.3", "--max-block", "0.1"),
    )
    try:
        with (
            httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {gateway.token}"}) as rw,
            httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {READ_ONLY}"}) as ro,
        ):
            # Not in Upstash's table: a single command, one pipeline entry, a whole transaction.
            assert rw.post("/", json=["DEBUG", "SLEEP", "0"]).status_code == 400
            assert rw.post("/pipeline", json=[["GET", f"{tag}k"], ["MODULE", "LIST"]]).status_code == 200
            assert rw.post("/multi-exec", json=[["SET", f"{tag}k", "v"], ["CONFIG", "RESETSTAT"]]).status_code == 400
            # Beyond the read-only token, refused by the gateway (403) or by Redis inside EVAL_RO.
            assert ro.post("/", json=["SET", f"{tag}k", "v"]).status_code == 403
            assert ro.post("/pipeline", json=[["GET", f"{tag}k"], ["DEL", f"{tag}k"]]).status_code == 200
            writes = ["EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", f"{tag}k"]
            assert ro.post("/", json=writes).status_code == 403
            # Over the size limits: nothing of the request runs.
            assert rw.post("/pipeline", json=[["PING"]] * 4).status_code == 400
            assert rw.post("/", json=["MSET", f"{tag}a", "1", f"{tag}b", "2"]).status_code == 400
            assert rw.post("/", json=["SET", f"{tag}k", "x" * 400]).status_code == 413
            # A command of Upstash's table that Redis 7.0 lacks keeps its own label.
            rw.post("/", json=["JSON.GET", f"{tag}j"])
            assert ro.get("/__stats").status_code == 200
        assert send_half_a_body(gateway).startswith(b"HTTP/1.1 504")

        samples = scrape(gateway, READ_ONLY)  # either kind of token reads the metrics
        assert value(samples, "refused_total", reason="policy") == 3
        assert value(samples, "refused_total", reason="readonly") == 2
        assert value(samples, "refused_total", reason="limit") == 3
        assert value(samples, "requests_total", endpoint="command", status="403") == 2
        assert value(samples, "requests_total", endpoint="command", status="504") == 1
        assert value(samples, "requests_total", endpoint="__stats", status="200") == 1
        # Refusals are not errors; the write stopped inside EVAL_RO and JSON.GET are Redis's own.
        assert value(samples, "errors_total", kind="redis") == 2
        assert value(samples, "errors_total", kind="http") == 3
        assert value(samples, "errors_total", kind="timeout") == 1
        assert value(samples, "errors_total", kind="bad_request") == 0
        assert value(samples, "commands_total", command="JSON.GET") == 1
        assert value(samples, "commands_total", command="DEBUG") == 1
    finally:
        gateway.process.stop()
