"""What a parsed document, a chunk of it and a retrieved passage are: the shapes the parsers,
the chunker, the index and a chat turn's citations share."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    """A run of a document's text under one heading path, on one page (paged formats).

    `start` is the character offset of `text` in the document's whole text (the sections'
    texts joined with "\\n\\n"), so a chunk's span quotes exactly what the file said."""

    text: str
    start: int
    page: int | None = None  # 1-based, for PDF, PPTX (slides) and other paged formats
    heading: tuple[str, ...] = ()  # outermost first: ("Chapter 2", "Refunds")


@dataclass
class ParsedDocument:
    """A file's text in reading order, and what could not be read (never silently empty)."""

    sections: list[Section]
    pages: int | None = None  # None for formats without pages
    pages_without_text: list[int] = field(default_factory=list)  # 1-based; candidates for --ocr
    problems: list[str] = field(default_factory=list)  # per-file warnings shown by `kb ls`
    title: str | None = None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed, with where it came from."""

    text: str
    start: int  # character span in the document's whole text
    end: int
    tokens: int
    page: int | None = None
    heading: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passage:
    """A chunk found by a search, with what a citation shows."""

    chunk_id: int
    collection: str
    file: str  # the document's path as the user added it (relative to its folder root)
    text: str
    score: float
    page: int | None = None
    heading: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    #: Cosine similarity of the query to this chunk under its collection's embedding model
    #: (None when it has no vectors): what `search.relevant` judges a passage by.
    similarity: float | None = None
