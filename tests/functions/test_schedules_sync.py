"""`python -m shared schedules sync` against our QStash emulator, whose clock the tests move, delivering
ticks to the functions server (the jobs of tests/functions/dlq_jobs.py; their schedules come from
`DLQ_TEST_SCHEDULES`, so each sync here can see other declarations).

Every sync makes QStash hold exactly the declared schedules among those this project owns, so each test
starts with a sync of its own declarations. Redis is a private redis-server behind a gateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from qstash import QStash
from qstash.schedule import ScheduleState
from upstash_redis import Redis

from shared.jobs.builtin import DLQ_DIGEST
from tests.conftest import PUBLIC_URL, Gateway
from tests.emulators.qstash_fixtures import Destination, eventually, wait_until
from tests.functions.dlq_stack import WAIT_S, DlqStack, failure_callback, sign, start_dlq_stack

JOBS = PUBLIC_URL + "/api/jobs/"


@pytest.fixture(scope="module")
def webhook_path() -> str:
    return f"/alerts-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stack(private_gateway: Gateway, destination: Destination, webhook_path: str) -> Iterator[DlqStack]:
    # Time scale 0: retries and delays are instant; the clock moves only when a test advances it.
    handle = start_dlq_stack(private_gateway, "--time-scale", "0",
                             STASHKIT_ALERT_WEBHOOK_URL=destination.url(webhook_path))  # fmt: skip
    yield handle
    handle.stop()


@pytest.fixture
def qstash(stack: DlqStack) -> Iterator[QStash]:
    client = stack.qstash.client()
    yield client
    client.http._client.close()  # the SDK offers no close(); its httpx client holds sockets


@pytest.fixture
def redis(private_gateway: Gateway) -> Iterator[Redis]:
    with Redis(private_gateway.url, private_gateway.token) as client:
        yield client


def sync(stack: DlqStack, declared: list[dict[str, Any]], *flags: str) -> tuple[int, list[str]]:
    done = stack.cli("schedules", "sync", *flags, DLQ_TEST_SCHEDULES=json.dumps(declared))
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout.splitlines()


def held(qstash: QStash) -> dict[str, Any]:
    return {s.schedule_id: s for s in qstash.schedule.list()}


def ticker(counter: str, cron: str = "* * * * *", **extra: Any) -> dict[str, Any]:
    return {"cron": cron, "job": "dlq.tick", "payload": {"counter": counter}, "schedule_id": "ticker"} | extra


def test_sync_creates_updates_and_deletes_only_the_schedules_it_owns(stack: DlqStack, qstash: QStash) -> None:
    qstash.schedule.create(destination="https://elsewhere.test/cron", cron="0 0 * * *", schedule_id="foreign")
    qstash.schedule.create(destination=JOBS + "dlq.tick", cron="0 0 * * *", schedule_id="hand-made")  # no marker
    declared = [ticker("c1", "*/5 * * * *"), ticker("c2", "0 9 * * 1-5", schedule_id="paris", tz="Europe/Paris")]
    status, lines = sync(stack, declared)
    assert status == 0, lines
    assert f"create    ticker  '*/5 * * * *' -> {JOBS}dlq.tick" in lines
    assert f"create    paris  'CRON_TZ=Europe/Paris 0 9 * * 1-5' -> {JOBS}dlq.tick" in lines
    schedules = held(qstash)
    assert {"foreign", "hand-made", "ticker", "paris", DLQ_DIGEST} <= set(schedules)
    tick = schedules["ticker"]
    assert (tick.destination, tick.cron, tick.body) == (JOBS + "dlq.tick", "*/5 * * * *", '{"counter":"c1"}')
    assert (tick.retries, tick.timeout, tick.failure_callback) == (0, 10, PUBLIC_URL + "/api/dlq/callback")
    assert tick.flow_control is not None and (tick.flow_control.key, tick.flow_control.parallelism) == ("dlq-tick", 2)
    assert schedules["paris"].cron == "CRON_TZ=Europe/Paris 0 9 * * 1-5"
    assert schedules[DLQ_DIGEST].cron == "0 * * * *" and schedules[DLQ_DIGEST].retries == 3

    status, lines = sync(stack, declared)  # nothing differs: nothing is sent
    assert "changed 0 schedule(s); 4 unchanged, 0 conflict(s)" in lines[-1], lines  # 2 declared, 2 built in

    changed = [ticker("c1", "*/10 * * * *")]
    status, lines = sync(stack, changed, "--dry-run")
    assert status == 0
    assert "update    ticker  cron: '*/5 * * * *' -> '*/10 * * * *'" in lines
    assert f"delete    paris  ({JOBS}dlq.tick)" in lines
    assert "would change 2 schedule(s)" in lines[-1]
    assert held(qstash)["ticker"].cron == "*/5 * * * *" and "paris" in held(qstash)  # the dry run changed nothing

    status, lines = sync(stack, changed)
    assert status == 0 and "changed 2 schedule(s)" in lines[-1]
    after = held(qstash)
    assert "paris" not in after and {"foreign", "hand-made", DLQ_DIGEST} <= set(after)  # not ours: left alone
    assert after["ticker"].cron == "*/10 * * * *"
    assert sync(stack, changed)[1][-1].startswith("changed 0 schedule(s)")


def test_a_declared_id_that_qstash_holds_for_something_else_is_a_conflict(stack: DlqStack, qstash: QStash) -> None:
    qstash.schedule.create(destination="https://elsewhere.test/cron", cron="0 0 * * *", schedule_id="taken")
    status, lines = sync(stack, [ticker("c", schedule_id="taken")])
    assert status == 1
    assert any(line.startswith("conflict  taken: QStash holds it for something else") for line in lines)
    assert held(qstash)["taken"].destination == "https://elsewhere.test/cron"


def test_a_schedule_of_a_job_that_is_not_registered_is_a_conflict(stack: DlqStack) -> None:
    status, lines = sync(stack, [ticker("c", job="no.such.job", schedule_id="orphan")], "--dry-run")
    assert status == 1 and "conflict  orphan: no job named 'no.such.job' is registered" in lines


def align(stack: DlqStack, period_s: int) -> int:
    """Move the emulator's clock to 1 s past its next multiple of `period_s` (returned, in ms): the next
    tick of a schedule with that period is then a whole period away, far longer than a test step takes."""
    now_s = stack.qstash.call("GET", "/__clock").json()["nowMs"] / 1000
    moved = stack.qstash.advance(period_s - now_s % period_s + 1)
    return int(moved["nowMs"]) - 1000


def test_ticks_arrive_when_the_emulator_clock_advances(stack: DlqStack, redis: Redis) -> None:
    counter = f"ticks-{uuid.uuid4().hex[:8]}"
    align(stack, 60)
    assert sync(stack, [ticker(counter)])[0] == 0
    assert redis.get(counter) is None  # no tick before the clock moves
    stack.qstash.advance(60)
    assert eventually(lambda: redis.get(counter), lambda n: n == "1", WAIT_S) == "1"
    stack.qstash.advance(180)  # three more minutes: each missed tick fires, in order
    assert eventually(lambda: redis.get(counter), lambda n: n == "4", WAIT_S) == "4"


def digest_ran(qstash: QStash, tick_ms: int) -> bool:
    """Whether the digest schedule ticked at `tick_ms` (or later) and that tick's run was delivered."""
    digest = qstash.schedule.get(DLQ_DIGEST)
    states = digest.last_schedule_states or {}
    ticked = digest.last_schedule_time is not None and digest.last_schedule_time >= tick_ms - 1000
    return ticked and bool(states) and all(state == ScheduleState.SUCCESS for state in states.values())


def test_the_hourly_digest_posts_the_dead_letters_to_the_webhook(
    stack: DlqStack, qstash: QStash, destination: Destination, webhook_path: str
) -> None:
    assert sync(stack, [])[0] == 0  # the built-in digest schedule only
    hour = align(stack, 3600)  # one digest runs (nothing to report yet); the next is an hour of clock away
    wait_until(lambda: digest_ran(qstash, hour), WAIT_S, "the digest's tick to be delivered")
    for n in range(3):
        body = json.dumps(failure_callback(f"msg_digest_{n}", job="dlq.toggle" if n else "dlq.fails")).encode()
        response = stack.http.post("/api/dlq/callback", content=body, headers={"Upstash-Signature": sign(body)})
        assert response.status_code == 200, response.text
    assert destination.received(webhook_path) == []
    stack.qstash.advance(3600)  # the top of the next hour passes
    posted = json.loads(destination.wait_for(webhook_path, timeout_s=WAIT_S)[0].body)
    assert posted["jobs"] == {"dlq.fails": 1, "dlq.toggle": 2} and posted["total"] == 3
