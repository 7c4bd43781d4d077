"""The receiver (shared/webhooks/receiver.py) against the real gateway and Redis, with jobs in eager mode
(run in-process through the real claim and status records): freshness on a controllable clock, replays,
racing duplicates, raw bodies, the inline answers, and one Redis round trip per accepted delivery."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.datastructures import Headers

from shared import keys
from shared.clock import ManualClock
from shared.config import RedisSettings
from shared.errors import ConfigurationError, Unauthorized
from shared.jobs import JobContext, job
from shared.jobs.eager import eager_jobs
from shared.redis import RedisClient, RedisClients, RedisPipeline
from shared.webhooks.receiver import RECEIVE, WebhookReceiver, payload_body
from shared.webhooks.schemes import body_digest
from shared.webhooks.sources import Source, parse_sources
from tests.conftest import Gateway
from tests.shared import webhook_signers as sign

runs: list[dict[str, Any]] = []


@job("webhook_test.collect", retries=0, timeout_s=5)
async def collect(payload: dict[str, Any], ctx: JobContext) -> None:
    runs.append(payload)


SOURCES = parse_sources(json.dumps({
    "gh": {"scheme": "github", "secrets": ["s3cret"], "job": {"push": "webhook_test.collect"}},
    "stripe": {"scheme": "stripe", "secrets": ["whsec_x"], "tolerance_s": 300, "job": "webhook_test.collect"},
    "slack": {"scheme": "slack", "secrets": ["slack-secret"], "job": "webhook_test.collect"},
}))  # fmt: skip


class CountingClient:
    """The real client, counting the round trips it makes (a command, or a whole pipeline)."""

    def __init__(self, inner: RedisClient) -> None:
        self.inner, self.round_trips = inner, 0

    async def execute(self, command: list[Any]) -> Any:
        self.round_trips += 1
        return await self.inner.execute(command)

    def pipeline(self) -> RedisPipeline:
        self.round_trips += 1
        return self.inner.pipeline()


@pytest.fixture
async def clients(gateway: Gateway) -> AsyncIterator[RedisClients]:
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=5)
    with eager_jobs(redis=clients.get):
        yield clients
    await clients.aclose()


@pytest.fixture
async def any_clients(any_gateway: Gateway) -> AsyncIterator[RedisClients]:
    """The same on a single Redis and on a 3-master Cluster (each marker is one key, its own slot)."""
    clients = RedisClients(RedisSettings(any_gateway.url, any_gateway.token), timeout_s=5)
    with eager_jobs(redis=clients.get):
        yield clients
    await clients.aclose()


def source(name: str) -> Source:
    # Each test gets its own source name, so its delivery markers are its own.
    return dataclasses.replace(SOURCES[name], name=f"{name}-{uuid.uuid4().hex[:8]}")


def runs_of(delivery_id: str) -> list[dict[str, Any]]:
    return [run for run in runs if run["delivery_id"] == delivery_id]


async def test_an_accepted_delivery_runs_its_job_once_with_the_raw_body(clients: RedisClients) -> None:
    src, body, delivery = source("gh"), b'{"ref": "main"}', str(uuid.uuid4())
    received = await WebhookReceiver(redis=clients.get).receive(
        src, Headers(sign.github("s3cret", body, delivery=delivery)), body
    )
    assert (received.outcome, received.job, received.event) == ("accepted", "webhook_test.collect", "push")
    [run] = runs_of(delivery)
    assert (run["source"], run["event"], run["body_encoding"], payload_body(run)) == (src.name, "push", "utf-8", body)
    assert run["headers"]["x-github-delivery"] == delivery


async def test_a_replayed_delivery_is_a_duplicate_and_not_run_again(any_clients: RedisClients) -> None:
    src, body, delivery = source("gh"), b"{}", str(uuid.uuid4())
    headers = Headers(sign.github("s3cret", body, delivery=delivery))
    receiver = WebhookReceiver(redis=any_clients.get)
    assert (await receiver.receive(src, headers, body)).outcome == "accepted"
    assert (await receiver.receive(src, headers, body)).outcome == "duplicate"
    assert len(runs_of(delivery)) == 1


async def test_concurrent_identical_deliveries_run_one_job(any_clients: RedisClients) -> None:
    src, body, delivery = source("gh"), b"{}", str(uuid.uuid4())
    headers = Headers(sign.github("s3cret", body, delivery=delivery))
    receiver = WebhookReceiver(redis=any_clients.get)
    outcomes = [r.outcome for r in await asyncio.gather(*(receiver.receive(src, headers, body) for _ in range(6)))]
    assert sorted(outcomes) == ["accepted"] + ["duplicate"] * 5
    assert len(runs_of(delivery)) == 1


@pytest.mark.parametrize(("offset_s", "word"), [(-301, "past"), (301, "future")])
async def test_a_timestamp_outside_the_tolerance_is_refused_with_its_reason(
    clients: RedisClients, offset_s: int, word: str
) -> None:
    src, body, now_s = source("stripe"), b'{"id": "evt_stale", "type": "x"}', 1_700_000_000
    clock = ManualClock(now_s * 1000)
    headers = Headers(sign.stripe(["whsec_x"], body, timestamp=now_s + offset_s))
    with pytest.raises(Unauthorized) as caught:
        await WebhookReceiver(redis=clients.get, clock=clock).receive(src, headers, body)
    assert caught.value.detail == f"the signed timestamp is 301 s in the {word}; the source {src.name!r} accepts 300 s"
    clock.advance(offset_s)  # the same request, on time: accepted (the refusal recorded nothing)
    assert (await WebhookReceiver(redis=clients.get, clock=clock).receive(src, headers, body)).outcome == "accepted"


async def test_a_body_that_is_not_utf8_reaches_the_job_intact_as_base64(clients: RedisClients) -> None:
    src, body, delivery = source("gh"), b"\xff\xfe\x00binary\x80", str(uuid.uuid4())
    await WebhookReceiver(redis=clients.get).receive(src, Headers(sign.github("s3cret", body, delivery=delivery)), body)
    [run] = runs_of(delivery)
    assert (run["body_encoding"], payload_body(run)) == ("base64", body)


async def test_ping_url_verification_and_unconfigured_events_answer_without_a_job(clients: RedisClients) -> None:
    receiver = WebhookReceiver(redis=clients.get)
    ping = await receiver.receive(source("gh"), Headers(sign.github("s3cret", b"{}", event="ping")), b"{}")
    assert ping.outcome == "ping"
    other = await receiver.receive(source("gh"), Headers(sign.github("s3cret", b"{}", event="issues")), b"{}")
    assert other.outcome == "ignored"
    body = json.dumps({"type": "url_verification", "challenge": "ch-123", "token": "t"}).encode()
    challenge = await receiver.receive(source("slack"), Headers(sign.slack("slack-secret", body)), body)
    assert (challenge.outcome, challenge.challenge) == ("challenge", "ch-123")


async def test_a_failed_publish_forgets_the_delivery_so_the_senders_retry_is_accepted(clients: RedisClients) -> None:
    src, body, delivery = source("gh"), b"{}", str(uuid.uuid4())
    headers = Headers(sign.github("s3cret", body, delivery=delivery))
    receiver = WebhookReceiver(redis=clients.get)
    with eager_jobs(enabled=False), pytest.raises(ConfigurationError):  # no QStash configured here
        await receiver.receive(src, headers, body)
    assert (await receiver.receive(src, headers, body)).outcome == "accepted"
    assert len(runs_of(delivery)) == 1


async def test_one_redis_round_trip_decides_a_delivery(clients: RedisClients) -> None:
    counting = CountingClient(clients.get())
    receiver = WebhookReceiver(redis=lambda: counting)
    src, body = source("gh"), b"{}"
    headers = Headers(sign.github("s3cret", body))
    await receiver.receive(src, headers, body)  # the job runs on its own client (eager mode)
    await receiver.receive(src, headers, body)  # duplicate
    assert counting.round_trips == 2


async def test_a_delivery_whose_function_died_before_publishing_is_published_by_the_senders_retry(
    clients: RedisClients,
) -> None:
    """The first request recorded the delivery and was killed before its publish (played here by running
    only its script): the sender's retry is a duplicate, yet publishes with the same deduplication id,
    so the job runs once, not never."""
    src, body, delivery = source("gh"), b'{"ref": "main"}', str(uuid.uuid4())
    marker = keys.webhook_seen(src.name, body_digest(src.name.encode(), delivery.encode())[:32])
    await RECEIVE.run(clients.get(), [marker], ["", "", src.tolerance_s * 1000, "killed", 60_000])
    headers = Headers(sign.github("s3cret", body, delivery=delivery))
    receiver = WebhookReceiver(redis=clients.get)
    assert (await receiver.receive(src, headers, body)).outcome == "duplicate"
    assert (await receiver.receive(src, headers, body)).outcome == "duplicate"
    assert len(runs_of(delivery)) == 1  # recovered once; the second retry's publish was deduplicated
