"""Model names (`name:tag`) and digests (`sha256:<hex>`): parsing, and refusing anything path-like."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidName

DEFAULT_TAG = "latest"
# Matched with fullmatch: `$` would also accept a trailing newline inside a segment.
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_TAG = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
MAX_SEGMENTS = 4


@dataclass(frozen=True, order=True)
class ModelName:
    """A validated model name; `str()` gives the canonical `name:tag` form."""

    name: str
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def segments(self) -> list[str]:
        return self.name.split("/")


def parse_name(raw: str) -> ModelName:
    """Parse `name[:tag]`, lower-cased; raise InvalidName for anything that could escape the store."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidName("a model name is required, like gemma3:270m")
    text = raw.strip().lower()
    if "\x00" in text or "\\" in text or text.startswith("/"):
        raise InvalidName(f"invalid model name {_show(raw)}: no NUL, backslash or absolute path")
    name, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:
        name, tag = text, DEFAULT_TAG
    segments = name.split("/")
    if len(segments) > MAX_SEGMENTS or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise InvalidName(
            f"invalid model name {_show(raw)}: use letters, digits, '.', '_' and '-' "
            "in up to 4 '/'-separated parts"
        )
    if any(set(s) <= {"."} for s in segments):
        raise InvalidName(f"invalid model name {_show(raw)}: '.' and '..' are not names")
    if not _TAG.fullmatch(tag) or set(tag) <= {"."}:
        raise InvalidName(f"invalid tag in {_show(raw)}")
    return ModelName(name, tag)


def closest(wanted: str, names: Iterable[str]) -> str | None:
    """The name a typo most likely meant (`smolm2:135m` -> `smollm2:135m`), or None.

    Compared whole and by the part before the tag, so `smolm2` still finds `smollm2:135m`.
    """
    known = sorted(set(names))
    if wanted in known:
        return wanted
    found = difflib.get_close_matches(wanted, known, n=1, cutoff=0.75)
    if found:
        return found[0]
    bare = wanted.removesuffix(f":{DEFAULT_TAG}")
    by_name = {name.rpartition(":")[0] or name: name for name in reversed(known)}
    found = difflib.get_close_matches(bare, list(by_name), n=1, cutoff=0.75)
    return by_name[found[0]] if found else None


def parse_digest(raw: str) -> str:
    """Return the 64-hex sha256 of `sha256:<hex>` or `sha256-<hex>`; raise InvalidName otherwise."""
    match = _DIGEST.fullmatch(raw.strip().lower()) if isinstance(raw, str) else None
    if not match:
        raise InvalidName(f"invalid digest {_show(raw)}: expected sha256:<64 hex digits>")
    return match.group(1)


def _show(raw: object) -> str:
    """Quote a user value for an error message, escaping control characters and capping length."""
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."
