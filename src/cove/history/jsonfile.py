"""Reading an untrusted JSON file: size checked before reading, strict UTF-8, bounded nesting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InvalidImport

MAX_DEPTH = 64  # real exports nest about a dozen levels; far more is an attack or a broken file


def read_json(path: Path, max_bytes: int) -> Any:
    """The parsed contents of `path`, or InvalidImport saying in one line what is wrong."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidImport(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise InvalidImport(f"{path.name} is {size:,} bytes; the import limit is {max_bytes:,}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidImport(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    # Checked again after reading: the file may have grown in between.
    if len(raw) > max_bytes:
        raise InvalidImport(f"{path.name} is over the import limit of {max_bytes:,} bytes")
    return parse_json(raw, path.name)


def parse_json(raw: bytes, name: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidImport(f"{name} is not valid UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InvalidImport(f"{name} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:
        raise InvalidImport(f"{name} is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidImport(f"{name} nests deeper than {MAX_DEPTH} levels") from exc
    check_depth(data, name)
    return data


def _no_constants(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def check_depth(data: Any, name: str) -> None:
    """Walk without recursion, so the check itself cannot overflow the stack; check text on the way.

    A `\\ud800` escape decodes to a lone surrogate, which is not text SQLite could store.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidImport(f"{name} nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _encodable(value):
            raise InvalidImport(f"{name} holds text with a lone surrogate escape ({value[:40]!r})")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
