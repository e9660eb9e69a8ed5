"""Typed access to fields of untrusted JSON objects, failing with InvalidImport that names the field."""

from __future__ import annotations

from typing import Any

from .errors import InvalidImport
from .times import from_epoch, normalise

_NAMES = {str: "text", int: "a whole number", list: "a list"}
LIMIT = 2**63  # SQLite integers are 64-bit


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidImport(f"{where} must be a JSON object")
    return value


def text(raw: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    return _typed(raw, key, str, where, optional)


def whole(raw: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = _typed(raw, key, int, where, optional)
    if value is not None and not -LIMIT < value < LIMIT:
        raise InvalidImport(f"{where}.{key} is too large")
    return value


def number(raw: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = _typed(raw, key, (int, float), where, optional)
    return None if value is None else float(value)


def items(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value: list[Any] = _typed(raw, key, list, where, False)
    return value


def flag(raw: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise InvalidImport(f"{where}.{key} must be true or false")
    return value


def iso_time(raw: dict[str, Any], key: str, where: str) -> str:
    """An ISO-8601 timestamp, normalised to how the database stores time."""
    value = text(raw, key, where)
    try:
        return normalise(value)
    except ValueError as exc:
        raise InvalidImport(f"{where}.{key} is not an ISO-8601 time: {value[:40]!r}") from exc


def epoch_time(value: Any, where: str) -> str | None:
    """Seconds since 1970 as ChatGPT writes them; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidImport(f"{where} must be seconds since 1970")
    try:
        return from_epoch(float(value))
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidImport(f"{where} is not a possible time: {value!r}") from exc


def _typed(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, optional: bool) -> Any:
    value = raw.get(key)
    if value is None and optional:
        return None
    # bool is an int to Python, but `true` is not a count of anything.
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    wanted = "a number" if isinstance(kind, tuple) else _NAMES.get(kind, kind.__name__)
    raise InvalidImport(f"{where}.{key} must be {wanted}" + (" (or null)" if optional else ""))
