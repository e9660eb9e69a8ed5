"""The offline built-in tools: the current date and time, and a calculator that never calls `eval`.

The calculator parses the expression with `ast` and walks only numbers and arithmetic operators;
names, calls, attributes and everything else are refused. Powers and results are bounded so
that `9**9**9` or a factorial-sized number cannot hold a CPU or fill memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .registry import Tool, ToolContext, ToolError

MAX_EXPRESSION = 500
MAX_EXPONENT = 1000
#: Results past this many digits are refused rather than computed on.
MAX_DIGITS = 1000


def current_time(arguments: dict[str, Any], _: ToolContext) -> str:
    zone_name = arguments.get("timezone")
    try:
        zone = ZoneInfo(zone_name) if zone_name else None
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {zone_name!r}; use an IANA name such as Europe/Paris") from None
    now = datetime.now(zone).astimezone(zone) if zone else datetime.now().astimezone()
    return f"{now.strftime('%A')} {now.isoformat(timespec='seconds')} ({now.tzname()})"


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression (+ - * / // % ** and parentheses, pi and e)."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not an arithmetic expression") from None
    return _value(tree.body)


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_value(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"an exponent beyond {MAX_EXPONENT} is too large to compute")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError("the result is too large") from None
    raise ToolError(f"only numbers and + - * / // % ** are allowed, not {type(node).__name__}")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise ToolError(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is too large")
    return value


def calculator(arguments: dict[str, Any], _: ToolContext) -> str:
    value = evaluate(str(arguments["expression"]))
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


TOOLS = [
    Tool(
        name="current_time",
        description="The current date and time (and weekday), here or in an IANA time zone.",
        parameters={
            "type": "object",
            "properties": {
                "timezone": {"type": "string", "description": "an IANA time zone such as Europe/Paris"}
            },
        },
        run=current_time,
    ),
    Tool(
        name="calculator",
        description="Evaluate an arithmetic expression exactly: + - * / // % ** and parentheses, pi, e.",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "for example (3 + 4) * 2 ** 10"}},
            "required": ["expression"],
        },
        run=calculator,
    ),
]
