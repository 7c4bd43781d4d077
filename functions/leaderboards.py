"""Leaderboards: submit scores, read ranks, pages, neighbours and windows (shared/leaderboards).

POST   /api/leaderboards/{board}/scores              submit (a submit key or a signature: shared/leaderboards/auth.py)
GET    /api/leaderboards/{board}                     ?period=&window=&limit=&offset= | cursor= | min_score=&max_score=
GET    /api/leaderboards/{board}/count               ?period=&window=
GET    /api/leaderboards/{board}/members/{member}    ?period=&window=&around=5
DELETE /api/leaderboards/{board}/members/{member}    (admin) remove a member from every window (cheaters)

Boards are declared in STASHKIT_LEADERBOARDS; an unknown board is a 404 problem.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from mangum import Mangum
from starlette.requests import Request
from starlette.responses import Response

from shared.config import LEADERBOARDS_VAR
from shared.errors import ConfigurationError, InvalidInput
from shared.http import TEXT_MIME_TYPES, Api, create_app, json_response
from shared.leaderboards.auth import SignedSubmission
from shared.leaderboards.board import Leaderboard, Page, PeriodOrAll
from shared.leaderboards.boards import MAX_ABS_SCORE, MEMBER_PATTERN, NAME_PATTERN, get_board
from shared.ratelimit.http import decision_headers, default_limiter, refusal

BoardName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
MemberId = Annotated[str, msgspec.Meta(pattern=MEMBER_PATTERN)]
ScoreValue = Annotated[float, msgspec.Meta(ge=-MAX_ABS_SCORE, le=MAX_ABS_SCORE)]
Window = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Score = int | float


class BoardPath(msgspec.Struct):
    board: BoardName


class MemberPath(msgspec.Struct):
    board: BoardName
    member: MemberId


class ScoreSubmission(msgspec.Struct, forbid_unknown_fields=True):
    member: MemberId
    score: ScoreValue
    submission_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    data: dict[str, Any] | None = None  # at most 1 KB of JSON


class WindowQuery(msgspec.Struct, forbid_unknown_fields=True):
    period: PeriodOrAll = "all"
    window: Window | None = None


class PageQuery(WindowQuery):
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    offset: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] | None = None
    cursor: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    min_score: ScoreValue | None = None
    max_score: ScoreValue | None = None


class MemberQuery(WindowQuery):
    around: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5


class EntryBody(msgspec.Struct):
    rank: int
    member: str
    score: Score
    data: Any = None


class StandingBody(msgspec.Struct):
    window: str
    member: str
    score: Score
    rank: int
    improved: bool


class SubmitResponse(msgspec.Struct):
    board: str
    member: str
    replayed: bool  # the submission id was seen before: the original result, nothing changed
    periods: dict[str, StandingBody]  # "all" and each configured period


class PageBody(msgspec.Struct):
    board: str
    period: str
    window: str
    entries: list[EntryBody]
    next_cursor: str | None
    total: int


class CountBody(msgspec.Struct):
    board: str
    period: str
    window: str
    count: int


class MemberBody(msgspec.Struct):
    member: str
    rank: int
    score: Score
    data: Any
    around: list[EntryBody]


def leaderboard(name: str) -> Leaderboard:
    return Leaderboard(name, get_board(name))


def _page_body(page: Page) -> PageBody:
    entries = [EntryBody(e.rank, e.member, e.score, e.data) for e in page.entries]
    return PageBody(page.board, page.period, page.window, entries, page.next_cursor, page.total)


api = Api("leaderboards", title="Leaderboards")


@api.post(
    "/api/leaderboards/{board}/scores",
    summary="Submit a score",
    path_params=BoardPath,
    body=ScoreSubmission,
    responses={200: SubmitResponse, 403: None, 429: None, 503: None},
    limit=SignedSubmission(),
)
async def submit(request: Request, path: BoardPath, body: ScoreSubmission) -> Response:
    board = leaderboard(path.board)
    headers: dict[str, str] = {}
    if board.board.ratelimit is not None:
        limiter = default_limiter()
        if board.board.ratelimit not in limiter.policies:
            problem = f"names the rate-limit policy {board.board.ratelimit!r}, which is not declared"
            raise ConfigurationError(LEADERBOARDS_VAR, problem)
        decision = await limiter.check(board.board.ratelimit, f"{path.board}:{body.member}")
        if not decision.allowed:
            raise refusal(decision)
        headers = decision_headers(decision)
    result = await board.submit(body.member, body.score, submission_id=body.submission_id, data=body.data)
    periods: dict[str, StandingBody] = {
        s.period: StandingBody(s.window, s.member, s.score, s.rank, s.improved) for s in result.standings
    }
    return json_response(SubmitResponse(path.board, result.member, result.replayed, periods), headers=headers)


@api.get("/api/leaderboards/{board}", summary="A page of a board", path_params=BoardPath, query=PageQuery,
         responses={200: PageBody, 404: None, 503: None})  # fmt: skip
async def page(request: Request, path: BoardPath, query: PageQuery) -> PageBody:
    board = leaderboard(path.board)
    if query.offset is not None and query.cursor is not None:
        raise InvalidInput("give offset or cursor, not both", field="query.cursor")
    if query.min_score is not None or query.max_score is not None:
        if query.cursor is not None:
            raise InvalidInput("a score range pages by offset", field="query.cursor")
        low = -MAX_ABS_SCORE if query.min_score is None else query.min_score
        high = MAX_ABS_SCORE if query.max_score is None else query.max_score
        found = await board.score_range(low, high, period=query.period, window=query.window, limit=query.limit,
                                        offset=query.offset or 0)  # fmt: skip
        return _page_body(found)
    found = await board.page(period=query.period, window=query.window, limit=query.limit, offset=query.offset or 0,
                             cursor=query.cursor)  # fmt: skip
    return _page_body(found)


@api.get("/api/leaderboards/{board}/count", summary="How many members a window holds", path_params=BoardPath,
         query=WindowQuery, responses={200: CountBody, 404: None, 503: None})  # fmt: skip
async def count(request: Request, path: BoardPath, query: WindowQuery) -> CountBody:
    board = leaderboard(path.board)
    total = await board.count(period=query.period, window=query.window)
    window = board.window_id(query.period, query.window)
    return CountBody(path.board, query.period, window, total)


@api.get("/api/leaderboards/{board}/members/{member}", summary="A member's rank, score and neighbours",
         path_params=MemberPath, query=MemberQuery, responses={200: MemberBody, 404: None, 503: None})  # fmt: skip
async def member(request: Request, path: MemberPath, query: MemberQuery) -> MemberBody:
    view = await leaderboard(path.board).member(path.member, period=query.period, window=query.window,
                                                around=query.around)  # fmt: skip
    around = [EntryBody(e.rank, e.member, e.score, e.data) for e in view.around]
    return MemberBody(view.member, view.rank, view.score, view.data, around)


@api.delete("/api/leaderboards/{board}/members/{member}", summary="Remove a member from every window",
            path_params=MemberPath, admin=True, responses={200: None, 404: None, 503: None})  # fmt: skip
async def remove(request: Request, path: MemberPath) -> Response:
    removed = await leaderboard(path.board).remove(path.member)
    return json_response({"board": path.board, "member": path.member, "windows": removed})


app = create_app(api)
lambda_handler = Mangum(app, lifespan="off", text_mime_types=TEXT_MIME_TYPES)
