"""Reading request bodies: strict UTF-8 JSON, no lone surrogates, validated into a schema."""

from __future__ import annotations

import json
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
    _refuse_surrogates(data)
    return data


def _refuse_surrogates(value: Any) -> None:
    """JSON may spell a lone surrogate (\\ud800) that no UTF-8 text can hold; the engine would choke."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadRequest("the request holds a lone UTF-16 surrogate, which is not text") from exc
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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
