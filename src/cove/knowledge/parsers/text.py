"""Plain text and Markdown: bytes in any common encoding decoded (never a crash), Markdown split
at its headings with the heading path kept."""

from __future__ import annotations

import codecs

from markdown_it import MarkdownIt

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from .build import DocumentBuilder
from .limits import Deadline

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _bom_encoding(data: bytes) -> str | None:
    return next((name for bom, name in _BOMS if data.startswith(bom)), None)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text without a BOM shows as a NUL in every other byte of ASCII-heavy text."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def _guess_encoding(data: bytes) -> str:
    """The detector's pick, except that among equally likely candidates Western European (cp1252,
    the commonest legacy encoding) wins: detectors otherwise often read French as cp1250."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # it is a dependency; cp1252 is the likeliest legacy encoding anyway
        return "cp1252"
    results = list(from_bytes(data[:200_000]))
    if not results:
        return "cp1252"
    best = min(m.chaos for m in results)
    tied = [m.encoding for m in results if m.chaos <= best + 0.01]
    return "cp1252" if {"cp1252", "latin_1", "iso8859_15"} & set(tied) else tied[0]


def decode(data: bytes, problems: list[str] | None = None) -> str:
    """Bytes as text: a BOM's encoding, else UTF-8, else a detected one; undecodable bytes become
    U+FFFD (and a problem line), and bytes that are no text at all are refused."""
    encoding = _bom_encoding(data) or _utf16_without_bom(data)
    if encoding is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        if b"\x00" in data[:8192]:
            raise DocumentRefused("looks like a binary file, not text; it has no text to index")
        encoding = _guess_encoding(data)
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        if problems is not None:
            problems.append(f"some bytes are not valid {encoding}; they were replaced")
        return data.decode(encoding if _known(encoding) else "cp1252", errors="replace")


def _known(encoding: str) -> bool:
    try:
        codecs.lookup(encoding)
    except LookupError:
        return False
    return True


def parse_text(data: bytes, deadline: Deadline) -> ParsedDocument:
    builder = DocumentBuilder()
    text = decode(data, builder.problems)
    builder.add(text)
    return builder.document()


def _headings(text: str) -> list[tuple[int, int, int, str]]:
    """(first line, line after, level, title) of each heading, in order; none inside code blocks."""
    tokens = MarkdownIt("commonmark").parse(text)
    found = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map and token.level == 0:
            title = tokens[i + 1].content if i + 1 < len(tokens) else ""
            found.append((token.map[0], token.map[1], int(token.tag[1:]), title))
    return found


def parse_markdown(data: bytes, deadline: Deadline) -> ParsedDocument:
    """One section per heading (its heading line included); a heading directly followed by a
    sub-heading travels with it, so no section is a bare title."""
    builder = DocumentBuilder()
    text = decode(data, builder.problems)
    lines = text.splitlines(keepends=True)
    headings = _headings(text)
    path: list[tuple[int, str]] = []
    cuts = [h[0] for h in headings] + [len(lines)]
    builder.add("".join(lines[: cuts[0]]))
    pending = ""
    for (first, after, level, title), end in zip(headings, cuts[1:], strict=True):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        body = "".join(lines[after:end])
        pending += "".join(lines[first:after]) + body
        if body.strip() or end == len(lines):
            builder.add(pending, heading=tuple(t for _, t in path))
            pending = ""
    return builder.document(title=headings[0][3] if headings and headings[0][2] == 1 else None)
