"""Reading request bodies: strict UTF-8 JSON, no lone surrogates, finite numbers, validated into a schema."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ..errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:  # "[[[[..." within the size limit would otherwise be a 500
        raise BadRequest("the request JSON is nested too deeply") from exc
    except ValueError as exc:  # Python refuses integers of more than 4,300 digits
        raise BadRequest("the request holds a number too long to read (more than 4,300 digits)") from exc
    _refuse_unreadable(data)
    return data


def _refuse_unreadable(value: Any) -> None:
    """What JSON can spell but no engine field can hold: a lone surrogate (\\ud800), which no
    UTF-8 text can carry, and NaN, Infinity or 1e400 (read as infinity), which no field takes
    and which JSON cannot carry on to an engine process. The error names where it was."""
    stack: list[tuple[str, Any]] = [("body", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadRequest(f"{where}: a lone UTF-16 surrogate, which is not text") from exc
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"{where}: {item} is not a finite number")
        elif isinstance(item, dict):
            stack.extend(("body", key) for key in item)
            stack.extend((key if where == "body" else f"{where}.{key}", v) for key, v in item.items())
        elif isinstance(item, list):
            stack.extend((where, v) for v in item)


async def parse(request: Request, schema: type[Model]) -> Model:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """The first problem in words a client developer can act on, e.g. "temperature: ..."."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {first['msg']}{suffix}"
