"""`Upstash-Retry-Delay` expressions, parsed by a small recursive-descent parser (never `eval`).

The language (upstash/docs qstash/features/retry.mdx, openapi `Upstash-Retry-Delay`): numbers, the
variable `retried`, `+ - * / %`, parentheses, and the functions pow sqrt abs exp floor ceil round min max.
The value is the delay in milliseconds. Parsing happens once, at publish time, so a malformed
expression is a 400 naming the header; evaluation never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Node = Callable[[float], float]  # retried -> value

MAX_EXPRESSION_CHARS = 512
MAX_DEPTH = 32  # nesting deeper than this is not a real retry policy, and would exhaust the stack

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_]\w*)|(.))")
_ARITY: dict[str, tuple[int, int]] = {  # name -> (min args, max args)
    "pow": (2, 2),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "exp": (1, 1),
    "floor": (1, 1),
    "ceil": (1, 1),
    "round": (1, 1),
    "min": (2, 64),
    "max": (2, 64),
}


class ExpressionError(ValueError):
    """The text is not a valid retry-delay expression."""


@dataclass(frozen=True, slots=True)
class RetryDelayExpression:
    text: str
    _node: Node

    def delay_ms(self, retried: int) -> float | None:
        """The delay for the retry after `retried` retries so far, or None if it is not a finite number."""
        try:
            value = self._node(float(retried))
        except (ArithmeticError, ValueError):  # sqrt(-1), x / 0, pow overflow ...
            return None
        return value if math.isfinite(value) else None


def parse_retry_delay(text: str) -> RetryDelayExpression:
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    parser = _Parser(_tokenize(text))
    node = parser.expression(0)
    if parser.peek() != "":
        raise ExpressionError(f"unexpected {parser.peek()!r}")
    return RetryDelayExpression(text, node)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    stripped_end = len(text.rstrip())
    while position < stripped_end:
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace can fail to match
            break
        lexeme = match.group(1) or match.group(2) or match.group(3)
        if match.group(3) is not None and lexeme not in "+-*/%(),":
            raise ExpressionError(f"unexpected character {lexeme!r}")
        tokens.append(lexeme)
        position = match.end()
    if not tokens:
        raise ExpressionError("empty expression")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self._tokens = tokens
        self._position = 0

    def peek(self) -> str:
        return self._tokens[self._position] if self._position < len(self._tokens) else ""

    def take(self) -> str:
        lexeme = self.peek()
        if lexeme == "":
            raise ExpressionError("unexpected end of expression")
        self._position += 1
        return lexeme

    def expect(self, lexeme: str) -> None:
        if self.take() != lexeme:
            raise ExpressionError(f"expected {lexeme!r}")

    def expression(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError("nested too deeply")
        node = self.term(depth)
        while self.peek() in ("+", "-"):
            node = _binary(self.take(), node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.unary(depth)
        while self.peek() in ("*", "/", "%"):
            node = _binary(self.take(), node, self.unary(depth))
        return node

    def unary(self, depth: int) -> Node:
        if self.peek() in ("+", "-"):
            sign = self.take()
            operand = self.unary(depth + 1)
            return operand if sign == "+" else (lambda r: -operand(r))
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        lexeme = self.take()
        if lexeme == "(":
            node = self.expression(depth + 1)
            self.expect(")")
            return node
        if lexeme[0].isdigit() or lexeme[0] == ".":
            value = float(lexeme)
            return lambda _r: value
        if lexeme == "retried":
            return lambda r: r
        if lexeme in _ARITY:
            return self.call(lexeme, depth)
        raise ExpressionError(f"unknown name {lexeme!r}")

    def call(self, name: str, depth: int) -> Node:
        self.expect("(")
        args = [self.expression(depth + 1)]
        while self.peek() == ",":
            self.take()
            args.append(self.expression(depth + 1))
        self.expect(")")
        low, high = _ARITY[name]
        if not low <= len(args) <= high:
            raise ExpressionError(f"{name}() takes {low} argument(s), got {len(args)}")
        return _function(name, args)


def _binary(operator: str, left: Node, right: Node) -> Node:
    if operator == "+":
        return lambda r: left(r) + right(r)
    if operator == "-":
        return lambda r: left(r) - right(r)
    if operator == "*":
        return lambda r: left(r) * right(r)
    if operator == "/":
        return lambda r: left(r) / right(r)
    return lambda r: math.fmod(left(r), right(r))


def _function(name: str, args: list[Node]) -> Node:
    if name in ("min", "max"):
        pick = min if name == "min" else max
        return lambda r: pick(arg(r) for arg in args)
    if name == "pow":
        base, exponent = args
        return lambda r: math.pow(base(r), exponent(r))
    single: dict[str, Callable[[float], float]] = {
        "sqrt": math.sqrt,
        "abs": abs,
        "exp": math.exp,
        "floor": math.floor,
        "ceil": math.ceil,
        "round": _round_half_away,
    }
    function, (arg,) = single[name], args
    return lambda r: float(function(arg(r)))


def _round_half_away(value: float) -> float:
    """Go's math.Round (QStash is written in Go): halves round away from zero, unlike Python's round."""
    return math.copysign(math.floor(abs(value) + 0.5), value)
