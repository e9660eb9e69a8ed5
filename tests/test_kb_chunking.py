"""Chunking follows structure: exact spans, one page and one heading per chunk, the token limit."""

from __future__ import annotations

import itertools
import re

import pytest

from cove.knowledge.chunking import chunk, full_text
from cove.knowledge.documents import ParsedDocument, Section


def words(text: str) -> int:
    """A fake tokenizer: a token per word or punctuation mark, plus two specials ([CLS], [SEP])."""
    return len(re.findall(r"\w+|[^\w\s]", text)) + 2


def document(*parts: tuple[str, int | None, tuple[str, ...]]) -> ParsedDocument:
    sections, offset = [], 0
    for text, page, heading in parts:
        sections.append(Section(text=text, start=offset, page=page, heading=heading))
        offset += len(text) + 2
    return ParsedDocument(sections=sections)


def prose(n: int, start: int = 0) -> str:
    return " ".join(f"word{i}" + ("." if i % 9 == 8 else "") for i in range(start, start + n))


def test_full_text_joins_sections_at_their_offsets() -> None:
    doc = document(("one", 1, ()), ("two", 2, ()))
    assert full_text(doc) == "one\n\ntwo"
    assert all(full_text(doc)[s.start : s.start + len(s.text)] == s.text for s in doc.sections)


def test_spans_quote_exactly_and_tokens_are_counted_on_the_chunk() -> None:
    doc = document((prose(400), 1, ("A",)), ("short paragraph\n\n" + prose(300, 1000), 2, ("A", "B")))
    text = full_text(doc)
    chunks = chunk(doc, words, max_tokens=64, overlap_tokens=8)
    assert len(chunks) > 10
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.tokens == words(c.text) <= 64


def test_a_chunk_never_spans_two_pages_or_two_headings() -> None:
    doc = document(("tiny one", 1, ("H",)), ("tiny two", 2, ("H",)), ("tiny three", 2, ("H", "K")))
    chunks = chunk(doc, words, max_tokens=200)
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("tiny one", 1, ("H",)),
        ("tiny two", 2, ("H",)),
        ("tiny three", 2, ("H", "K")),
    ]


def test_sections_with_the_same_page_and_heading_are_packed_together() -> None:
    doc = document(("first bit", 3, ("H",)), ("second bit", 3, ("H",)))
    [only] = chunk(doc, words, max_tokens=200)
    assert only.text == "first bit\n\nsecond bit"
    assert (only.start, only.end, only.page) == (0, len(full_text(doc)), 3)


def test_whole_paragraphs_are_kept_when_they_fit() -> None:
    paragraphs = [prose(20, 100 * i) for i in range(6)]
    doc = document(("\n\n".join(paragraphs), None, ()))
    chunks = chunk(doc, words, max_tokens=60, overlap_tokens=0)
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in range(0, 6, 2)]


def test_a_long_paragraph_is_cut_with_overlap_and_nothing_is_lost() -> None:
    text = " ".join(f"w{i}" for i in range(500))  # one sentence, no paragraph breaks
    doc = document((text, None, ()))
    chunks = chunk(doc, words, max_tokens=50, overlap_tokens=10)
    assert all(c.tokens <= 50 for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(c.text.split())
    assert covered == set(text.split())
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, "consecutive pieces of one sentence overlap"


def test_a_word_longer_than_the_limit_is_cut_by_characters() -> None:
    blob = "x" * 5000

    def per_char(s: str) -> int:
        return len(s) // 4 + 2

    chunks = chunk(document((blob, None, ())), per_char, max_tokens=100, overlap_tokens=0)
    assert "".join(c.text for c in chunks) == blob
    assert all(c.tokens <= 100 for c in chunks)


def test_a_tokenizer_that_charges_for_joining_still_keeps_the_limit() -> None:
    def joins_cost(s: str) -> int:
        return words(s) + s.count("\n\n") * 5

    doc = document(("\n\n".join(prose(10, 20 * i) for i in range(30)), None, ()))
    chunks = chunk(doc, joins_cost, max_tokens=40, overlap_tokens=0)
    assert chunks and all(joins_cost(c.text) <= 40 for c in chunks)


def test_empty_document_gives_no_chunks_and_bad_offsets_are_caught() -> None:
    assert chunk(ParsedDocument(sections=[]), words) == []
    broken = ParsedDocument(sections=[Section(text="abc", start=0), Section(text="def", start=3)])
    with pytest.raises(ValueError):
        chunk(broken, words)
    with pytest.raises(ValueError):
        chunk(document(("abc", None, ())), words, max_tokens=2)


def _covered(text: str, chunks: list) -> bool:
    """Every non-blank character of the text is inside some chunk's span."""
    inside = bytearray(len(text))
    for c in chunks:
        inside[c.start : c.end] = b"\1" * (c.end - c.start)
    return all(inside[i] or text[i].isspace() for i in range(len(text)))


def dense_digits(text: str) -> int:
    """A tokenizer whose density varies: a token per digit, one per other word, two specials."""
    return sum(len(w) if w.isdigit() else 1 for w in re.findall(r"\w+|[^\w\s]", text)) + 2


@pytest.mark.parametrize("count", [words, dense_digits], ids=["words", "dense digits"])
@pytest.mark.parametrize("seed", range(4))
def test_random_documents_keep_every_promise(count: object, seed: int) -> None:
    import random

    rng = random.Random(seed)
    parts = []
    for page in range(1, 6):
        paragraphs = []
        for _ in range(rng.randint(1, 6)):
            sentence_words = [
                str(rng.randint(0, 10**12)) if rng.random() < 0.2 else f"w{rng.randint(0, 999)}"
                for _ in range(rng.randint(1, 400))
            ]
            paragraphs.append(
                ". ".join(" ".join(sentence_words[k : k + 15]) for k in range(0, len(sentence_words), 15))
            )
        parts.append(("\n\n".join(paragraphs), page, (f"H{page % 2}",)))
    doc = document(*parts)
    text = full_text(doc)
    chunks = chunk(doc, count, max_tokens=64, overlap_tokens=16)  # type: ignore[arg-type]
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.tokens == count(c.text) <= 64  # type: ignore[operator]
        section = next(s for s in doc.sections if s.start <= c.start < s.start + len(s.text) + 2)
        assert c.end <= section.start + len(section.text) and c.page == section.page
    assert _covered(text, chunks)


def test_the_tokenizer_is_called_about_once_per_paragraph_and_chunk() -> None:
    """A PDF page is one paragraph of many lines: counting every line would cost a tokenizer
    call per line (the engine's, through the scheduler); shares of the page's count are enough."""
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return words(text)

    page = "\n".join(prose(12, 100 * i) for i in range(40))  # 40 lines, about 500 tokens
    doc = document(*((page, n, ()) for n in range(1, 101)))
    chunks = chunk(doc, counting, max_tokens=256, overlap_tokens=32)
    assert all(c.tokens <= 256 for c in chunks) and {c.page for c in chunks} == set(range(1, 101))
    assert calls <= 1 + 100 + 2 * len(chunks), (calls, len(chunks))


def test_a_long_log_file_is_never_tokenized_whole() -> None:
    """One section of 20,000 lines (a log: no blank lines) is counted by samples and chunks,
    never in one call on its whole text; the chunks still keep the limit and cover it all."""
    longest = 0

    def counting(text: str) -> int:
        nonlocal longest
        longest = max(longest, len(text))
        return dense_digits(text)

    lines = [f"2026-12-02 03:{i % 60:02d} worker {i} handled request {i * 7919}" for i in range(20_000)]
    lines[12_345] = "x" * 30_000  # and one line with no spaces at all
    doc = document(("\n".join(lines), None, ()))
    chunks = chunk(doc, counting, max_tokens=128, overlap_tokens=16)
    assert longest <= 4096
    assert all(c.tokens <= 128 for c in chunks)
    assert _covered(full_text(doc), chunks)


def test_small_sections_cost_a_call_or_two_each() -> None:
    calls = 0

    def counting(text: str) -> int:
        nonlocal calls
        calls += 1
        return words(text)

    doc = document(
        *((f"Section {n} has a short paragraph.\n\nAnd another one.", None, (f"H{n}",)) for n in range(50))
    )
    chunks = chunk(doc, counting)
    assert len(chunks) == 50 and calls <= 1 + 2 * 50
