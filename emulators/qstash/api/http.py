"""What every route handler sees and returns: the parsed request, path parameters, a JSON reply."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import Headers, QueryParams

from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str  # exactly as sent (percent-encoding kept): destinations are pasted raw (reference G14)
    query_string: str
    headers: Headers
    body: bytes
    client_ip: str
    query: QueryParams = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "query", QueryParams(self.query_string))

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from exc

    def json_or_none(self) -> Any:
        return self.json() if self.body.strip() else None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    payload: object = None  # None: an empty body


@dataclass(frozen=True, slots=True)
class Params:
    """Path parameters of the matched route; `text()` percent-decodes a name or id."""

    match: re.Match[str]

    def raw(self, name: str) -> str:
        return self.match.group(name)

    def text(self, name: str) -> str:
        return unquote(self.match.group(name))


Handler = Callable[[Emulator, HttpRequest, Params], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler

    @classmethod
    def of(cls, methods: str, pattern: str, handler: Handler) -> Route:
        return cls(frozenset(methods.split("|")), re.compile(pattern), handler)


def multi_values(request: HttpRequest, name: str) -> list[str]:
    """A query filter's values: repeated keys and comma-separated values both count (openapi)."""
    return [part for value in request.query.getlist(name) for part in value.split(",") if part]


def int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise BadRequest(f"query parameter {name} must be an integer from {low} to {high}")
    return int(value)


def optional_int_param(request: HttpRequest, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise BadRequest(f"query parameter {name} must be a non-negative integer")
    return int(value)


def string_list(payload: Any, key: str) -> list[str] | None:
    """`payload[key]` as a list of strings; None if the body or the key is absent; 400 if mistyped."""
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    values = payload.get(key)
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadRequest(f"{key} must be an array of strings")
    return values
