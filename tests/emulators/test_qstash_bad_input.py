"""Bad input: 401 for a wrong or missing token, 404 for unknown ids, 400 naming the malformed header or
field, 405 and 413 where due; every error is `{"error": ...}` JSON and none carries a stack trace."""

from __future__ import annotations

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess

DEST = "http://127.0.0.1:9/x"  # never reached: each request below is refused before publishing


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert fragment in body["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v2/publish/{DEST}"),
        ("GET", "/v2/keys"),
        ("GET", "/v2/queues"),
        ("GET", "/__stats"),
        ("POST", "/__clock/advance"),
        ("GET", "/v2/events"),
        ("GET", "/nowhere"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc", "Bearer", "bearer " + "x" * 100])
def test_a_missing_or_wrong_token_is_401(
    qstash_server: EmulatorProcess, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = qstash_server.call(method, path, authorize=False, headers=headers)
    assert_error(response, 401, "token")


def test_the_sdk_with_a_wrong_token_raises(qstash_server: EmulatorProcess) -> None:
    client = QStash("not-the-token", base_url=qstash_server.base_url, retry=False)
    try:
        with pytest.raises(QStashError, match="401"):
            client.signing_key.get()
    finally:
        client.http._client.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/messages/msg_unknown"),
        ("DELETE", "/v2/messages/msg_unknown"),
        ("GET", "/v2/dlq/0-0"),
        ("DELETE", "/v2/dlq/0-0"),
        ("POST", "/v2/dlq/retry/0-0"),
        ("GET", "/v2/queues/no-such-queue"),
        ("DELETE", "/v2/queues/no-such-queue"),
        ("POST", "/v2/queues/no-such-queue/pause"),
        ("POST", "/v2/queues/no-such-queue/resume"),
        ("GET", "/v2/schedules/scd_unknown"),
        ("DELETE", "/v2/schedules/scd_unknown"),
        ("PATCH", "/v2/schedules/scd_unknown/pause"),
        ("POST", "/v2/schedules/scd_unknown/resume"),
        ("GET", "/v2/topics/no-such-group"),
        ("DELETE", "/v2/topics/no-such-group/endpoints"),
        ("POST", "/v2/publish/no-such-group"),
        ("POST", "/v2/enqueue/q/no-such-group"),
        ("GET", "/v2/flowControl/no-such-key"),
        ("POST", "/v2/flowControl/no-such-key/resume"),
        ("POST", "/v2/flowControl/no-such-key/resetRate"),
        ("GET", "/v3/anything"),
        ("GET", "/"),
    ],
)
def test_unknown_ids_and_paths_are_404(qstash_server: EmulatorProcess, method: str, path: str) -> None:
    assert_error(qstash_server.call(method, path), 404)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Upstash-Delay", "soon"),
        ("Upstash-Delay", "-5s"),
        ("Upstash-Delay", "9999d"),
        ("Upstash-Not-Before", "tomorrow"),
        ("Upstash-Retries", "-1"),
        ("Upstash-Retries", "three"),
        ("Upstash-Retries", "1000"),
        ("Upstash-Retry-Delay", "__import__('os').system('x')"),
        ("Upstash-Retry-Delay", "1000 *"),
        ("Upstash-Retry-Delay", "pow(2)"),
        ("Upstash-Method", "FETCH"),
        ("Upstash-Timeout", "0s"),
        ("Upstash-Timeout", "ages"),
        ("Upstash-Flow-Control-Value", "parallelism=0"),
        ("Upstash-Flow-Control-Value", "speed=3"),
        ("Upstash-Flow-Control-Value", "period=8d"),
        ("Upstash-Content-Based-Deduplication", "maybe"),
        ("Upstash-Callback", "ftp://example.com"),
        ("Upstash-Failure-Callback", "/relative"),
        ("Upstash-Callback-Retries", "x"),
        ("Upstash-Failure-Callback-Delay", "later"),
        ("Upstash-Redact-Fields", "everything"),
        ("Upstash-Deduplication-Id", ""),
    ],
)
def test_a_malformed_publish_header_is_400_naming_it(
    qstash_server: EmulatorProcess, destination: Destination, path: str, header: str, value: str
) -> None:
    headers = {header: value}
    if header == "Upstash-Flow-Control-Value":
        headers["Upstash-Flow-Control-Key"] = "k"
    response = qstash_server.call("POST", "/v2/publish/" + destination.url(path), headers=headers, content=b"x")
    assert_error(response, 400, header)
    response = qstash_server.call("POST", "/v2/enqueue/q1/" + destination.url(path), headers=headers, content=b"x")
    assert_error(response, 400, header)
    assert destination.received(path) == []


def test_a_flow_control_value_without_a_key_is_400(qstash_server: EmulatorProcess) -> None:
    response = qstash_server.call("POST", f"/v2/publish/{DEST}", headers={"Upstash-Flow-Control-Value": "rate=1"})
    assert_error(response, 400, "Upstash-Flow-Control-Key")


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "Upstash-Cron"),
        ({"Upstash-Cron": "61 * * * *"}, "Upstash-Cron"),
        ({"Upstash-Cron": "* * * *"}, "Upstash-Cron"),
        ({"Upstash-Cron": "CRON_TZ=Mars/Base * * * * *"}, "Upstash-Cron"),
        ({"Upstash-Cron": "0 0 30 2 *"}, "never fires"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Retries": "x"}, "Upstash-Retries"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "bad id!"}, "Upstash-Schedule-Id"),
        ({"Upstash-Cron": "* * * * *", "Upstash-Queue-Name": "bad/queue"}, "Upstash-Queue-Name"),
    ],
)
def test_a_malformed_schedule_is_400(qstash_server: EmulatorProcess, headers: dict[str, str], fragment: str) -> None:
    assert_error(qstash_server.call("POST", f"/v2/schedules/{DEST}", headers=headers), 400, fragment)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "JSON"),
        (b"{}", "array"),
        (b"[]", "array"),
        (b'[{"destination": 5}]', "batch item 0"),
        (b'[{"destination": "' + DEST.encode() + b'", "headers": {"Upstash-Delay": "x"}}]', "Upstash-Delay"),
        (b'[{"destination": "' + DEST.encode() + b'", "headers": {"A": 1}}]', "headers"),
        (b'[{"destination": "' + DEST.encode() + b'", "body": 5}]', "body"),
        (b'[{"destination": "no-such-group"}]', "url group"),
    ],
)
def test_a_malformed_batch_is_rejected_whole(qstash_server: EmulatorProcess, body: bytes, fragment: str) -> None:
    before = qstash_server.stats()["published"]
    response = qstash_server.call("POST", "/v2/batch", content=body)
    assert response.status_code in (400, 404)
    assert_error(response, response.status_code, fragment)
    assert qstash_server.stats()["published"] == before


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/v2/queues", {"content": b"nope"}),
        ("POST", "/v2/queues", {"json": {"queueName": "q", "parallelism": 0}}),
        ("POST", "/v2/queues", {"json": {"queueName": "bad name"}}),
        ("POST", "/v2/queues", {"json": {"queueName": "q", "paused": "yes"}}),
        ("POST", "/v2/queues", {"json": ["q"]}),
        ("POST", "/v2/topics/g1/endpoints", {"json": {"endpoints": []}}),
        ("POST", "/v2/topics/g1/endpoints", {"json": {"endpoints": [{"url": "ftp://x"}]}}),
        ("POST", "/v2/topics/g1/endpoints", {"json": {"endpoints": [{"name": "no url"}]}}),
        ("DELETE", "/v2/messages", {"json": {"messageIds": "msg_1"}}),
        ("DELETE", "/v2/dlq", {"json": {"dlqIds": [1, 2]}}),
        ("GET", "/v2/events", {"params": {"state": "CANCELLED"}}),
        ("GET", "/v2/events", {"params": {"count": "0"}}),
        ("GET", "/v2/events", {"params": {"cursor": "abc"}}),
        ("GET", "/v2/events", {"params": {"fromDate": "yesterday"}}),
        ("GET", "/v2/dlq", {"params": {"count": "101"}}),
        ("GET", "/v2/dlq", {"params": {"responseStatus": "teapot"}}),
        ("POST", "/v2/flowControl/k/pin", {"params": {"parallelism": "0"}}),
        ("POST", "/v2/flowControl/k/unpin", {"params": {"rate": "maybe"}}),
        ("POST", "/__clock/advance", {"json": {"seconds": -1}}),
        ("POST", "/__clock/advance", {"json": {"seconds": "10"}}),
        ("POST", "/__clock/advance", {"json": {"seconds": True}}),
        ("POST", "/__clock/advance", {"content": b"{"}),
        ("POST", "/v2/publish/https:/collapsed-slashes.example", {}),
    ],
)
def test_malformed_bodies_and_parameters_are_400(
    qstash_server: EmulatorProcess, method: str, path: str, kwargs: dict[str, object]
) -> None:
    assert_error(qstash_server.call(method, path, **kwargs), 400)  # type: ignore[arg-type]


def test_a_wrong_method_is_405(qstash_server: EmulatorProcess) -> None:
    assert_error(qstash_server.call("PUT", "/v2/keys"), 405)
    assert_error(qstash_server.call("GET", f"/v2/publish/{DEST}"), 405)


def test_a_body_over_the_limit_is_413(qstash_server: EmulatorProcess) -> None:
    response = qstash_server.call("POST", f"/v2/publish/{DEST}", content=b"x" * (10 * 1024 * 1024 + 1))
    assert_error(response, 413)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/publish/%",
        "/v2/publish/%ZZ",
        "/v2/messages/%00",
        "/v2/queues/%2F..%2F",
        "/v2/schedules/%FF/pause",
        "/v2/topics/%E2%82/endpoints",
        "/v2/enqueue/%/x",
        "/v2/dlq/..",
        "/v2/flowControl/%C0%AF/pin",
    ],
)
def test_odd_paths_never_crash_the_server(qstash_server: EmulatorProcess, path: str) -> None:
    for method in ("GET", "POST", "DELETE", "PATCH"):
        response = qstash_server.call(method, path, content=b"\xff\xfe")
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
    assert qstash_server.call("GET", "/v2/keys").status_code == 200
