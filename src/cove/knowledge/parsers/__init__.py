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
from .code import CODE_SUFFIXES
from .files import check_size, read_bytes

# suffix -> (module, function); the function takes the file's bytes and the parse's deadline
# (and `ocr` for PDF, the suffix for source code).
_PARSERS: dict[str, tuple[str, str]] = {}


def _register(module: str, function: str, *suffixes: str) -> None:
    for suffix in suffixes:
        _PARSERS[suffix] = (module, function)


_register("text", "parse_text", ".txt", ".text", ".log")
_register("text", "parse_markdown", ".md", ".markdown", ".mdx")
_register("rst", "parse_rst", ".rst", ".rest")
_register("html", "parse_html", ".html", ".htm", ".xhtml")
_register("pdf", "parse_pdf", ".pdf")
_register("office", "parse_docx", ".docx")
_register("office", "parse_pptx", ".pptx")
_register("epub", "parse_epub", ".epub")
_register("mail", "parse_eml", ".eml")
_register("mail", "parse_mbox", ".mbox")
_register("table", "parse_csv", ".csv")
_register("table", "parse_tsv", ".tsv")
_register("code", "parse_code", *CODE_SUFFIXES)

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
    seconds = limits.MAX_SECONDS + (limits.MAX_OCR_SECONDS if ocr and suffix == ".pdf" else 0.0)
    deadline = limits.Deadline(seconds)
    parser = _parser(suffix)
    options: dict[str, object] = {"ocr": ocr} if suffix == ".pdf" else {}
    if _PARSERS[suffix][0] == "code":
        options["suffix"] = suffix
    try:
        return limits.time_capped(lambda: parser(data, deadline=deadline, **options), deadline.seconds)
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


__all__ = ["SUFFIXES", "check_size", "is_supported", "limits", "parse"]
