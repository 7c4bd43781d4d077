"""The cron parser and next-tick computation, and the retry-delay expression parser (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from emulators.qstash.backoff import default_backoff_ms
from emulators.qstash.cron import CronError, parse_cron
from emulators.qstash.durations import parse_duration_ms
from emulators.qstash.retry_expr import ExpressionError, parse_retry_delay


def ms(text: str, zone: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000


def next_tick(cron: str, after: str, zone: str = "UTC") -> str:
    found = parse_cron(cron).next_after_ms(ms(after, zone))
    assert found is not None
    return datetime.fromtimestamp(found / 1000, ZoneInfo(zone)).isoformat()


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("* * * * *", "2026-03-01T10:00:00", "2026-03-01T10:01:00+00:00"),
        ("*/15 * * * *", "2026-03-01T10:14:59", "2026-03-01T10:15:00+00:00"),
        ("0 9 * * MON-FRI", "2026-03-06T09:00:00", "2026-03-09T09:00:00+00:00"),  # Friday -> Monday
        ("0 0 1 JAN *", "2026-06-01T00:00:00", "2027-01-01T00:00:00+00:00"),
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00+00:00"),
        ("0 12 13 * 5", "2026-03-01T00:00:00", "2026-03-06T12:00:00+00:00"),  # day 13 OR a Friday
        ("0 0 * * 7", "2026-03-01T00:00:00", "2026-03-08T00:00:00+00:00"),  # 7 is Sunday
        ("5,10-12/2 3 * * *", "2026-03-01T03:06:00", "2026-03-01T03:10:00+00:00"),
        ("@hourly", "2026-03-01T10:30:00", "2026-03-01T11:00:00+00:00"),
    ],
)
def test_next_tick(cron: str, after: str, expected: str) -> None:
    assert next_tick(cron, after) == expected


def test_cron_tz_fires_at_local_time_across_dst() -> None:
    cron = "CRON_TZ=America/New_York 0 9 * * *"
    assert next_tick(cron, "2026-03-07T12:00:00", "America/New_York") == "2026-03-08T09:00:00-04:00"
    assert next_tick(cron, "2026-03-06T12:00:00", "America/New_York") == "2026-03-07T09:00:00-05:00"


def test_a_local_time_inside_the_spring_forward_gap_is_skipped() -> None:
    cron = "CRON_TZ=America/New_York 30 2 * * *"
    assert next_tick(cron, "2026-03-08T00:00:00", "America/New_York") == "2026-03-09T02:30:00-04:00"


def test_a_never_firing_expression_has_no_next_tick() -> None:
    assert parse_cron("0 0 30 2 *").next_after_ms(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000) is None


@pytest.mark.parametrize(
    "cron",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "5-1 * * * *",
        "CRON_TZ=Mars/Olympus * * * * *",
        "CRON_TZ=../../etc/passwd * * * * *",
        "a b c d e",
        "@every 5m",
        "* * * * ¹",
    ],
)
def test_malformed_cron_is_rejected(cron: str) -> None:
    with pytest.raises(CronError):
        parse_cron(cron)


@pytest.mark.parametrize(
    ("expression", "retried", "expected_ms"),
    [
        ("1000", 0, 1000),
        ("1000 * (1 + retried)", 2, 3000),
        ("pow(2, retried) * 1000", 3, 8000),
        ("max(1000, pow(2, retried) * 100)", 1, 1000),
        ("min(5, 3, 9)", 0, 3),
        ("-retried + 10 % 4", 1, 1),
        ("round(2.5) + floor(1.9) + ceil(0.1) + abs(-1) + sqrt(4)", 0, 3 + 1 + 1 + 1 + 2),
        ("exp(0)", 0, 1),
    ],
)
def test_retry_delay_expressions(expression: str, retried: int, expected_ms: float) -> None:
    assert parse_retry_delay(expression).delay_ms(retried) == pytest.approx(expected_ms)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "1 +",
        "(1",
        "1)",
        "foo",
        "pow(1)",
        "sqrt(1, 2)",
        "__import__('os')",
        "1; 2",
        "2 ** 3",
        "x" * 600,
        "(" * 40 + "1" + ")" * 40,
    ],
)
def test_malformed_retry_delay_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ExpressionError):
        parse_retry_delay(expression)


def test_an_expression_that_cannot_be_evaluated_yields_no_delay() -> None:
    assert parse_retry_delay("sqrt(-1)").delay_ms(0) is None
    assert parse_retry_delay("1 / (retried - 1)").delay_ms(1) is None
    assert parse_retry_delay("exp(1000)").delay_ms(0) is None


def test_default_backoff_matches_the_documented_table() -> None:
    assert [round(default_backoff_ms(n) / 1000) for n in (1, 2, 3)] == [12, 148, 1808]
    assert default_backoff_ms(5) == default_backoff_ms(6) == 86_400_000


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [("10s", 10_000), ("1m", 60_000), ("1h30m3s", 5_403_000), ("1d10h", 122_400_000), ("500ms", 500), ("7", 7000)],
)
def test_durations(text: str, expected_ms: float) -> None:
    assert parse_duration_ms(text) == expected_ms


@pytest.mark.parametrize("text", ["", "s", "10x", "-5s", "1s2", "1 s", "400d"])
def test_malformed_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)
