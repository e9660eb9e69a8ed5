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
    tokens: int  # without the tokenizer's fixed overhead (special tokens); estimated below level 0
    level: int  # -1 section, 0 paragraph, 1 sentence, 2 group of words, 3 run of characters


@dataclass
class _Cutter:
    """Cuts a section into pieces within the limit. The section is counted by the tokenizer
    once (a long one by a sample); its paragraphs, sentences and words get that count shared
    out by length (a call per paragraph or line would cost thousands of the engine's calls on
    a long PDF), and the packer checks every chunk it makes with a real count."""

    text: str
    count: CountTokens
    max_tokens: int
    overlap_tokens: int
    overhead: int

    def net(self, start: int, end: int) -> int:
        return max(0, self.count(self.text[start:end]) - self.overhead)

    def fits(self, tokens: int) -> bool:
        return tokens + self.overhead <= self.max_tokens

    def measure(self, start: int, end: int) -> int:
        """The span's tokens: counted when it is short, else a sample's count scaled by length
        (never a call on a 50 MB log file's whole text)."""
        long = max(4096, 16 * self.max_tokens)
        if end - start <= long:
            return self.net(start, end)
        return _share(self.net(start, start + long), end - start, long)

    def pieces(self, start: int, end: int) -> Iterator[_Piece]:
        """The section as pieces within the limit: whole, or its paragraphs, cut finer if long."""
        yield from self.fit(start, end, self.measure(start, end), level=-1)

    def fit(self, start: int, end: int, tokens: int, level: int) -> Iterator[_Piece]:
        """The span (a unit of `level`) as one piece when it fits, else cut into finer units."""
        if self.fits(tokens) or end - start <= 1:
            yield _Piece(start, end, tokens, level)
            return
        if level == -1:
            spans = list(_spans(self.text, start, end, _PARAGRAPH))
        elif level == 0:
            spans = list(_spans(self.text, start, end, _SENTENCE))
        elif level == 1:
            spans = self._groups(start, end, tokens)
        else:
            spans = self._runs(start, end, tokens)
        if len(spans) <= 1 and level < 3:  # nothing to cut at this level: try the next
            yield from self.fit(start, end, tokens, level + 1)
            return
        for s, e in spans:
            yield from self.fit(s, e, _share(tokens, e - s, end - start), level + 1 if level < 3 else 3)

    def _target(self) -> int:
        """Size of the small pieces a too-long sentence is cut into: half the overlap, so the
        overlap can repeat one or two of them even when their estimates run a little high."""
        budget = self.max_tokens - self.overhead
        return max(1, min(budget, self.overlap_tokens // 2 or budget // 4))

    def _groups(self, start: int, end: int, tokens: int) -> list[tuple[int, int]]:
        words = list(_spans(self.text, start, end, _WORD))
        per_group = max(1, int(self._target() * len(words) / max(tokens, 1)))
        return [
            (words[i][0], words[min(i + per_group, len(words)) - 1][1])
            for i in range(0, len(words), per_group)
        ]

    def _runs(self, start: int, end: int, tokens: int) -> list[tuple[int, int]]:
        """A 'word' over the limit (a base64 blob, a URL): runs of characters."""
        width = max(1, min((end - start + 1) // 2, int(self._target() * (end - start) / max(tokens, 1))))
        return [(s, min(end, s + width)) for s in range(start, end, width)]


def _share(tokens: int, part: int, whole: int) -> int:
    """A part's estimated share of a span's tokens, by length, rounded up."""
    return max(1, -(-tokens * part // max(whole, 1)))


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
    """Whole pieces into chunks up to the limit, repeating up to `overlap_tokens` of pieces.

    Each chunk is counted once; when estimates were low it gives back pieces (found by
    bisection), and a single piece still over the limit is cut again with its real count."""
    text, limit, i = cutter.text, cutter.max_tokens, 0
    while i < len(pieces):
        j, total = i + 1, cutter.overhead + pieces[i].tokens
        while j < len(pieces) and total + pieces[j].tokens <= limit:
            total += pieces[j].tokens
            j += 1
        found = _largest_fitting(cutter, pieces, i, j)
        if found is None:  # pieces[i] alone is over the limit: its estimate was low
            piece = pieces[i]
            if piece.end - piece.start <= 1:  # one character over the limit: it cannot be cut
                found = (i + 1, cutter.count(text[piece.start : piece.end]))
            else:  # known to be over, whatever a sample's estimate says: cut it finer
                over = max(cutter.measure(piece.start, piece.end), limit - cutter.overhead + 1)
                pieces[i : i + 1] = list(cutter.fit(piece.start, piece.end, over, piece.level))
                continue
        j, tokens = found
        body = text[pieces[i].start : pieces[j - 1].end]
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


def _largest_fitting(cutter: _Cutter, pieces: list[_Piece], i: int, j: int) -> tuple[int, int] | None:
    """(end, tokens) of the longest run pieces[i:end], end <= j, within the limit, by real count."""
    text, limit = cutter.text, cutter.max_tokens
    tokens = cutter.count(text[pieces[i].start : pieces[j - 1].end])
    if tokens <= limit:
        return j, tokens
    best, low, high = None, i + 1, j - 1
    while low <= high:
        middle = (low + high) // 2
        tokens = cutter.count(text[pieces[i].start : pieces[middle - 1].end])
        if tokens <= limit:
            best, low = (middle, tokens), middle + 1
        else:
            high = middle - 1
    return best


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
