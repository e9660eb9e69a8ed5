"""Turning a file into text: `parse(path)` picks the parser for the file's suffix and returns its
sections in reading order, or raises DocumentRefused saying why the file cannot be indexed.

Each format family has its own module; they are imported when first needed, so indexing a folder
of Markdown never loads the PDF or Office parsers. A document's text is data: nothing in it is
ever run, followed or included (no links fetched, no rST `include`, no HTML script)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from . import limits
from .files import read_bytes

# suffix -> (module, function); the function takes the file's bytes (and `ocr` for PDF).
_TEXT = {".txt": "parse_text", ".text": "parse_text", ".log": "parse_text"}
_MARKDOWN = {".md": "parse_markdown", ".markdown": "parse_markdown", ".mdx": "parse_markdown"}
_PARSERS: dict[str, tuple[str, str]] = {
    **{s: ("text", f) for s, f in _TEXT.items()},
    **{s: ("text", f) for s, f in _MARKDOWN.items()},
}


def _register(module: str, function: str, *suffixes: str) -> None:
    for suffix in suffixes:
        _PARSERS[suffix] = (module, function)


# (more formats are registered here as their modules land)

#: Every suffix (lower case, with its dot) cove can index.
SUFFIXES: frozenset[str] = frozenset(_PARSERS)


def is_supported(path: Path) -> bool:
    """Whether `parse` has a parser for this file's suffix (case does not matter)."""
    return path.suffix.lower() in SUFFIXES


def _parser(suffix: str) -> Callable[..., ParsedDocument]:
    module, function = _PARSERS[suffix]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)  # type: ignore[no-any-return]


def parse(path: Path, *, ocr: bool = False) -> ParsedDocument:
    """The file's text in sections, with pages, headings and per-file problems.

    Raises DocumentRefused(reason) for a file that cannot be indexed: unsupported type, not a
    regular file, unreadable, over a size, count, ratio, page or time cap, encrypted or broken."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentRefused(f"files of type '{suffix or path.name}' are not supported")
    data = read_bytes(path)
    deadline = limits.Deadline()
    parser = _parser(suffix)
    options = {"ocr": ocr} if suffix == ".pdf" else {}
    try:
        return parser(data, deadline=deadline, **options)
    except DocumentRefused:
        raise
    except RecursionError:
        raise DocumentRefused("is nested too deeply to read") from None
    except MemoryError:
        raise DocumentRefused("needs more memory to read than is available") from None
    except Exception as e:  # a parser library's own failure on a malformed file: skip it, say why
        raise DocumentRefused(f"could not be read as a {suffix[1:].upper()} file: {_short(e)}") from None


def _short(e: Exception) -> str:
    message = " ".join(str(e).split())[:200]
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


__all__ = ["SUFFIXES", "is_supported", "parse"]
