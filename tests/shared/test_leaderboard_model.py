"""A property test: after random submissions, every rank, score and page of a real board (gateway and
Redis) equals that of a plain-Python model of it, for each order and each submit policy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInput
from shared.leaderboards.board import Leaderboard
from shared.leaderboards.boards import Board, Order, SubmitPolicy
from shared.redis import RedisClients
from tests.conftest import Gateway, gateway_clients

LOW, HIGH = -50, 50  # the board's bounds: some submissions (and some increments) fall outside
MEMBERS = [f"m{i}" for i in range(8)]


@dataclass
class Model:
    """The board as the issue describes it: best / latest / increment, and ties to whoever got there first."""

    order: Order
    policy: SubmitPolicy
    scores: dict[str, tuple[float, int]] = field(default_factory=dict)  # member -> (score, when it was written)
    writes: int = 0

    def submit(self, member: str, score: float) -> bool:
        """False when the board must refuse it."""
        old = self.scores.get(member)
        new = old[0] + score if old is not None and self.policy == "increment" else score
        if not LOW <= new <= HIGH:  # for increment, the total is what must stay within the bounds
            return False
        if old is not None and (new == old[0] or (self.policy == "best" and not self.better(new, old[0]))):
            return True
        self.writes += 1
        self.scores[member] = (new, self.writes)
        return True

    def better(self, a: float, b: float) -> bool:
        return a > b if self.order == "desc" else a < b

    def ranking(self) -> list[tuple[str, float]]:
        sign = -1 if self.order == "desc" else 1
        ordered = sorted(self.scores.items(), key=lambda item: (sign * item[1][0], item[1][1]))
        return [(member, score) for member, (score, _) in ordered]


@pytest.fixture(scope="module")
async def redis(gateway: Gateway) -> AsyncIterator[RedisClients]:
    async with gateway_clients(gateway, timeout_s=10) as clients:
        yield clients


scores = st.one_of(st.integers(LOW - 10, HIGH + 10), st.integers(-200, 200).map(lambda n: n / 4))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.sampled_from(["desc", "asc"]),
    policy=st.sampled_from(["best", "latest", "increment"]),
    submissions=st.lists(st.tuples(st.sampled_from(MEMBERS), scores), max_size=30),
    page_size=st.integers(1, 5),
)
async def test_board_matches_a_plain_python_model(
    redis: RedisClients, order: Order, policy: SubmitPolicy, submissions: list[tuple[str, float]], page_size: int
) -> None:
    board = Board(order=order, policy=policy, min_score=LOW, max_score=HIGH)
    lb = Leaderboard(f"model-{uuid.uuid4().hex[:10]}", board, redis=redis.get)
    model = Model(order, policy)
    for member, score in submissions:
        accepted = model.submit(member, score)
        try:
            await lb.submit(member, score, submission_id=uuid.uuid4().hex)
        except InvalidInput:
            assert not accepted, (member, score)
        else:
            assert accepted, (member, score)
    expected = model.ranking()
    top = await lb.page(limit=100)
    assert [(e.member, e.score) for e in top.entries] == expected
    assert [e.rank for e in top.entries] == list(range(1, len(expected) + 1))
    assert await lb.count() == len(expected)
    for rank, (member, score) in enumerate(expected, start=1):
        view = await lb.member(member, around=1)
        assert (view.rank, view.score) == (rank, score)
        assert [e.member for e in view.around] == [m for m, _ in expected[max(0, rank - 2) : rank + 1]]
    paged, cursor = [], None
    while True:
        page = await lb.page(limit=page_size, cursor=cursor)
        paged += [(e.rank, e.member, e.score) for e in page.entries]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert paged == [(rank, m, s) for rank, (m, s) in enumerate(expected, start=1)]
    offset_page = await lb.page(limit=page_size, offset=page_size)
    assert [(e.member, e.score) for e in offset_page.entries] == expected[page_size : 2 * page_size]
