"""Cutting a parsed document into chunks small enough to embed, following its structure.

A chunk never crosses a section (so never two pages or two headings); inside a section it holds
whole paragraphs, and only a paragraph longer than the limit is cut, at sentences, then words,
then characters, with `overlap_tokens` of the previous chunk repeated at the start of the next.
Every chunk's `start`/`end` is its exact span in `full_text(doc)`, so a citation quotes exactly."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .documents import Chunk, ParsedDocument, Section

#: What joins two sections' texts in a document's whole text.
SEPARATOR = "\n\n"

_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?;。！？])\s+|\n\s*")
_WORD = re.compile(r"\s+")

CountTokens = Callable[[str], int]


def full_text(doc: ParsedDocument) -> str:
    """The document's whole text: its sections' texts joined with a blank line."""
    return SEPARATOR.join(section.text for section in doc.sections)


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int  # without the tokenizer's fixed overhead (special tokens) of one call


@dataclass
class _Cutter:
    text: str
    count: CountTokens
    max_tokens: int
    overlap_tokens: int
    overhead: int

    def net(self, start: int, end: int) -> int:
        return max(0, self.count(self.text[start:end]) - self.overhead)

    def pieces(self, start: int, end: int) -> Iterator[_Piece]:
        """Paragraphs of the span, each within the limit (long ones cut finer)."""
        for s, e in _spans(self.text, start, end, _PARAGRAPH):
            yield from self._fit(s, e, self.net(s, e), level=0)

    def _fit(self, start: int, end: int, tokens: int, level: int) -> Iterator[_Piece]:
        if tokens + self.overhead <= self.max_tokens:
            yield _Piece(start, end, tokens)
        elif level == 0:
            for s, e in _spans(self.text, start, end, _SENTENCE):
                yield from self._fit(s, e, self.net(s, e), level=1)
        elif level == 1:
            yield from self._groups(start, end, tokens)
        else:
            yield from self._characters(start, end, tokens)

    def _target(self) -> int:
        """Size of the small pieces a too-long sentence is cut into, so overlap can repeat some."""
        budget = self.max_tokens - self.overhead
        return max(1, min(budget, self.overlap_tokens or budget // 4))

    def _groups(self, start: int, end: int, tokens: int) -> Iterator[_Piece]:
        words = list(_spans(self.text, start, end, _WORD))
        per_group = max(1, int(self._target() * len(words) / max(tokens, 1)))
        for i in range(0, len(words), per_group):
            s, e = words[i][0], words[min(i + per_group, len(words)) - 1][1]
            yield from self._fit(s, e, self.net(s, e), level=2 if per_group == 1 else 1)

    def _characters(self, start: int, end: int, tokens: int) -> Iterator[_Piece]:
        """A single 'word' over the limit (a base64 blob, a URL): cut it by characters."""
        width = max(1, int(self._target() * (end - start) / max(tokens, 1)))
        s = start
        while s < end:
            e = min(end, s + width)
            t = self.net(s, e)
            while t + self.overhead > self.max_tokens and e - s > 1:
                e = s + (e - s) // 2
                t = self.net(s, e)
            yield _Piece(s, e, t)
            s = e


def _spans(text: str, start: int, end: int, separator: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """Non-blank stretches of text[start:end] between separator matches, without outer whitespace."""
    position = start
    for match in separator.finditer(text, start, end):
        yield from _trimmed(text, position, match.start())
        position = match.end()
    yield from _trimmed(text, position, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


def _pack(cutter: _Cutter, pieces: list[_Piece], section: Section) -> Iterator[Chunk]:
    """Whole pieces into chunks up to the limit, repeating up to `overlap_tokens` of pieces."""
    text, limit, i = cutter.text, cutter.max_tokens, 0
    while i < len(pieces):
        j, total = i + 1, cutter.overhead + pieces[i].tokens
        while j < len(pieces) and total + pieces[j].tokens <= limit:
            total += pieces[j].tokens
            j += 1
        body = text[pieces[i].start : pieces[j - 1].end]
        tokens = cutter.count(body)
        while tokens > limit and j - 1 > i:  # joining pieces can cost a token or two more
            j -= 1
            body = text[pieces[i].start : pieces[j - 1].end]
            tokens = cutter.count(body)
        yield Chunk(
            text=body,
            start=pieces[i].start,
            end=pieces[j - 1].end,
            tokens=tokens,
            page=section.page,
            heading=section.heading,
        )
        if j >= len(pieces):
            return
        # repeat the tail, but leave room for the next new piece: a chunk of only overlap is noise
        k, carried, room = j, 0, limit - cutter.overhead - pieces[j].tokens
        while k - 1 > i and carried + pieces[k - 1].tokens <= min(cutter.overlap_tokens, room):
            k -= 1
            carried += pieces[k].tokens
        i = k


def _groups(doc: ParsedDocument, text: str) -> Iterator[tuple[Section, int, int]]:
    """Runs of adjacent sections with the same page and heading, as (first section, start, end)."""
    first: Section | None = None
    end = 0
    for section in doc.sections:
        if text[section.start : section.start + len(section.text)] != section.text:
            raise ValueError(f"section at {section.start} is not at its offset in the document's text")
        if first is not None and (first.page, first.heading) != (section.page, section.heading):
            yield first, first.start, end
            first = None
        first = first or section
        end = section.start + len(section.text)
    if first is not None:
        yield first, first.start, end


def chunk(
    doc: ParsedDocument,
    count_tokens: CountTokens,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> list[Chunk]:
    """The document's chunks in reading order, each at most `max_tokens` by `count_tokens`
    (the embedding model's tokenizer, special tokens included if it counts them)."""
    overhead = count_tokens("")
    if max_tokens <= overhead:
        raise ValueError(f"max_tokens ({max_tokens}) leaves no room for text")
    overlap = max(0, min(overlap_tokens, (max_tokens - overhead) // 2))
    text = full_text(doc)
    cutter = _Cutter(text, count_tokens, max_tokens, overlap, overhead)
    chunks: list[Chunk] = []
    for section, start, end in _groups(doc, text):
        chunks.extend(_pack(cutter, list(cutter.pieces(start, end)), section))
    return chunks
