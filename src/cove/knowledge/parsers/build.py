"""Assembling a ParsedDocument: sections with exact offsets into the document's whole text."""

from __future__ import annotations

from ..documents import ParsedDocument, Section
from ..errors import DocumentRefused
from . import limits

#: What joins two sections' texts in a document's whole text (`chunking.full_text`).
SEPARATOR = "\n\n"


def clean(text: str) -> str:
    """Text as the index stores it: no NUL (SQLite and FTS5 end strings there), no stray ends."""
    return text.replace("\x00", "").strip()


class DocumentBuilder:
    """Collects sections in reading order; each one's `start` is its offset in the whole text."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.offset = 0
        self.problems: list[str] = []

    def add(self, text: str, *, page: int | None = None, heading: tuple[str, ...] = ()) -> None:
        """Add a section; empty text is skipped (it would give a chunk of nothing)."""
        text = clean(text)
        if not text:
            return
        if self.sections:
            self.offset += len(SEPARATOR)
        heading = tuple(h for h in (clean(" ".join(h.split())) for h in heading) if h)
        self.sections.append(Section(text=text, start=self.offset, page=page, heading=heading))
        self.offset += len(text)
        if self.offset > limits.MAX_TEXT_CHARS:
            raise DocumentRefused(
                f"holds more than {limits.MAX_TEXT_CHARS:,} characters of text; split it into smaller files"
            )

    def document(
        self,
        *,
        pages: int | None = None,
        pages_without_text: list[int] | None = None,
        title: str | None = None,
    ) -> ParsedDocument:
        problems = list(self.problems)
        if not self.sections and not pages_without_text:
            problems.append("no text found in this file")
        return ParsedDocument(
            sections=self.sections,
            pages=pages,
            pages_without_text=list(pages_without_text or []),
            problems=problems,
            title=clean(title) if title else None,
        )
