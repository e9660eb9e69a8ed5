"""PDF, page by page (pypdf): each page's text layer is a section on its page, under the heading
its outline (bookmarks) gives; a page without text is listed, and read by Tesseract with `ocr`.
Encrypted, broken and oversized PDFs are refused with the reason."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..documents import ParsedDocument
from ..errors import DocumentRefused
from . import limits, ocr
from .build import DocumentBuilder
from .limits import Deadline

_MAX_OUTLINE = 10_000
_quiet_lock = threading.Lock()
_quiet_users = 0


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 100:
            self.messages.append(record.getMessage())


@contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    """pypdf's warnings about this file, kept from the console (they become a problem line)."""
    global _quiet_users
    logger = logging.getLogger("pypdf")
    handler = _Collect()
    logger.addHandler(handler)
    with _quiet_lock:
        _quiet_users += 1
        logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                logger.propagate = True


def _open(data: bytes) -> Any:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as e:
        raise DocumentRefused(
            f"is not a readable PDF (its structure or cross-reference table is broken: {e})"
        ) from None
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))  # many PDFs are 'encrypted' only to restrict printing
        except Exception:
            opened = False
        if not opened:
            raise DocumentRefused("is password-protected; save a copy without a password to index it")
    return reader


def _page_count(reader: Any) -> int:
    """The pages the PDF declares, checked before its page tree is walked, then the real count."""
    try:
        declared = int(reader.trailer["/Root"].get_object()["/Pages"].get_object().get("/Count", 0))
    except Exception:
        declared = 0
    if declared > limits.MAX_PAGES:
        raise DocumentRefused(f"declares {declared:,} pages; cove indexes PDFs of up to {limits.MAX_PAGES:,}")
    try:
        count = len(reader.pages)
    except Exception as e:
        raise DocumentRefused(
            f"has a page tree pypdf cannot read ({type(e).__name__}); re-save the PDF"
        ) from None
    if count > limits.MAX_PAGES:
        raise DocumentRefused(f"has {count:,} pages; cove indexes PDFs of up to {limits.MAX_PAGES:,}")
    return count


def _outline(reader: Any, count: int) -> list[tuple[int, tuple[str, ...]]]:
    """(page index, heading path) of each bookmark, in page order; [] when there is none."""
    found: list[tuple[int, tuple[str, ...]]] = []

    def walk(items: list[Any], path: tuple[str, ...], depth: int) -> None:
        last: tuple[str, ...] = path
        for item in items:
            if len(found) >= _MAX_OUTLINE or depth > 16:
                return
            if isinstance(item, list):
                walk(item, last, depth + 1)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            try:
                page = reader.get_destination_page_number(item)
            except Exception:
                page = None
            last = (*path, title) if title else path
            if page is not None and 0 <= page < count:
                found.append((page, last))

    try:
        walk(list(reader.outline), (), 0)
    except Exception:
        return []
    return sorted(found, key=lambda entry: entry[0])


@dataclass(frozen=True)
class _PageHeadings:
    """The heading in effect at the top of a page, and the bookmarks that start on it."""

    top: tuple[str, ...]
    starting: list[tuple[str, ...]]


def _headings(outline: list[tuple[int, tuple[str, ...]]], count: int) -> list[_PageHeadings]:
    pages: list[_PageHeadings] = []
    current: tuple[str, ...] = ()
    position = 0
    for page in range(count):
        starting = []
        while position < len(outline) and outline[position][0] == page:
            starting.append(outline[position][1])
            position += 1
        pages.append(_PageHeadings(current, starting))
        if starting:
            current = starting[-1]
    return pages


def _split_at_bookmarks(text: str, headings: _PageHeadings) -> list[tuple[str, tuple[str, ...]]]:
    """The page's text cut where each bookmark's title starts a line, each part under its own
    heading; a title not found on the page labels the text from the previous cut on."""
    cuts: list[tuple[int, tuple[str, ...]]] = [(0, headings.top)]
    lowered = text.lower()
    for path in headings.starting:
        title = " ".join(path[-1].lower().split()) if path else ""
        found = _line_with(lowered, title, cuts[-1][0]) if title else -1
        if found > cuts[-1][0]:
            cuts.append((found, path))
        else:  # at the same place as the previous cut (or not found): this heading wins
            cuts[-1] = (cuts[-1][0], path)
    ends = [c[0] for c in cuts[1:]] + [len(text)]
    parts: list[tuple[str, tuple[str, ...]]] = []
    carried = 0  # a lone line before a cut (a running head, a page number, a bare chapter title)
    for (start, path), end in zip(cuts, ends, strict=True):  # travels with the part after it
        piece = text[start:end].strip()
        if end < len(text) and "\n" not in piece and len(piece) < 100:
            continue
        parts.append((text[carried:end], path))
        carried = end
    return parts


def _line_with(lowered: str, title: str, start: int) -> int:
    """Offset of the start of the first line at or after `start` that contains `title`."""
    at = lowered.find(title, start)
    while at >= 0:
        line = lowered.rfind("\n", 0, at) + 1
        if line >= start and len(lowered[line:at].strip()) <= 12:  # a number like "2.1" may lead
            return line
        at = lowered.find(title, at + 1)
    return -1


def _page_images(page: Any) -> list[bytes]:
    """The page's images as PNG, largest first is not needed: in the order the page draws them."""
    pngs = []
    for image in page.images:
        picture = image.image
        if picture is None or picture.width * picture.height < 10_000:
            continue  # a logo or a rule, not a scanned page
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def _ocr_page(page: Any, number: int, deadline: Deadline, problems: list[str]) -> str:
    try:
        images = _page_images(page)
    except Exception as e:
        problems.append(f"page {number}: its image could not be decoded for OCR ({type(e).__name__})")
        return ""
    if not images:
        problems.append(f"page {number}: no text and no image to read with OCR")
        return ""
    try:
        return "\n\n".join(ocr.read_image(png, deadline) for png in images)
    except DocumentRefused as e:  # one page's OCR failing costs that page, not the document
        problems.append(f"page {number}: {e}")
        return ""


def _pages_text(pages: list[int]) -> str:
    shown = ", ".join(str(p) for p in pages[:20]) + (
        f" and {len(pages) - 20} more" if len(pages) > 20 else ""
    )
    return f"page{'s' if len(pages) > 1 else ''} {shown}"


def parse_pdf(data: bytes, deadline: Deadline, ocr: bool = False) -> ParsedDocument:
    builder = DocumentBuilder()
    with _pypdf_warnings() as warnings:
        reader = _open(data)
        count = _page_count(reader)
        headings = _headings(_outline(reader, count), count)
        without, read_by_ocr = _read_pages(reader, count, headings, builder, deadline, ocr)
        title = _title(reader)
    if any("xref" in w.lower() or "startxref" in w.lower() for w in warnings):
        builder.problems.append(
            "its cross-reference table is damaged; cove rebuilt it, so check quotes from it"
        )
    if read_by_ocr:
        builder.problems.append(f"{_pages_text(read_by_ocr)}: no text layer, read by OCR (Tesseract)")
    if without:
        hint = "" if ocr else "; add the file with --ocr to read them with Tesseract"
        builder.problems.append(f"{_pages_text(without)}: no text layer (scanned?){hint}")
    return builder.document(pages=count, pages_without_text=without, title=title)


def _read_pages(
    reader: Any,
    count: int,
    headings: list[_PageHeadings],
    builder: DocumentBuilder,
    deadline: Deadline,
    use_ocr: bool,
) -> tuple[list[int], list[int]]:
    """Adds each page's text; returns the pages left without text and those read by OCR."""
    without: list[int] = []
    read_by_ocr: list[int] = []
    ocr_missing = use_ocr and ocr.tesseract() is None
    if ocr_missing:
        builder.problems.append(ocr.MISSING)
    ocr_budget = Deadline(limits.MAX_OCR_SECONDS)
    not_reached: list[int] = []  # pages OCR had no time left for
    for index in range(count):
        deadline.check()
        number = index + 1
        page = reader.pages[index]
        try:
            text = page.extract_text() or ""
        except Exception as e:
            builder.problems.append(f"page {number}: its text could not be extracted ({type(e).__name__})")
            text = ""
        if not text.strip() and use_ocr and not ocr_missing:
            if ocr_budget.left() > 0:
                text = _ocr_page(page, number, ocr_budget, builder.problems)
            else:
                not_reached.append(number)
            if text.strip():
                read_by_ocr.append(number)
        if text.strip():
            for part, heading in _split_at_bookmarks(text, headings[index]):
                builder.add(part, page=number, heading=heading)
        else:
            without.append(number)
    if not_reached:
        builder.problems.append(
            f"{_pages_text(not_reached)}: not read by OCR, which stops after {limits.MAX_OCR_SECONDS:g} s "
            "a document; split the file to read the rest"
        )
    return without, read_by_ocr


def _title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        return None
    return str(title) if title else None
