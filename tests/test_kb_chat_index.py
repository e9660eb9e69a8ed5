"""A chat turn over the real knowledge base (index, chunker, sync; a hashed bag-of-words embedder
instead of a model): the citations name the real file and quote exactly what it says there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kb_helpers import FAKE_MODEL, make_kb, write
from server_fixtures import tiny_cove
from tool_fakes import ToolScriptEngine

from cove.chat.service import TurnRequest
from cove.knowledge.errors import CollectionNotFound
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove

LEASE = """# Lease

## Refunds

Refunds are paid within 30 days of a written request to the landlord.

## Ending the lease

Either party may end this lease with 90 days notice in writing.
"""


@pytest.fixture
def kb(cove_home: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    kb = make_kb(cove_home)
    kb.create("contracts", FAKE_MODEL)  # no measured threshold: a hashed embedder is no model
    write(tmp_path / "docs", "lease.md", LEASE)
    kb.add("contracts", [tmp_path / "docs"])
    kb.sync("contracts")
    yield kb
    kb.close()


@pytest.fixture
def cove(cove_home: Path, kb: KnowledgeBase) -> Iterator[Cove]:
    script = ToolScriptEngine()
    cove = tiny_cove(cove_home, script)
    cove.conversations.knowledge_base = kb
    yield cove
    cove.close()


def test_citations_quote_the_file_where_it_says_so(cove: Cove, tmp_path: Path) -> None:
    ask = [{"role": "user", "content": "How many days notice to end the lease?"}]
    stream = cove.chat_turn(TurnRequest("tiny", ask, {"num_ctx": 4096}, collections=["contracts"]))
    list(stream)
    assert stream.citations, "the search found nothing"
    best = stream.citations[0]
    assert best.file == "lease.md" and best.collection == "contracts"
    assert "90 days notice" in best.text
    assert best.heading and best.heading[-1] == "Ending the lease"
    whole = (tmp_path / "docs" / "lease.md").read_text(encoding="utf-8")
    assert best.text.strip() in whole


def test_an_unknown_collection_is_the_knowledge_base_s_own_error(cove: Cove) -> None:
    ask = [{"role": "user", "content": "anything"}]
    with pytest.raises(CollectionNotFound):
        cove.chat_turn(TurnRequest("tiny", ask, collections=["nope"]))


def test_below_the_measured_threshold_strict_mode_says_so_itself(
    cove: Cove, kb: KnowledgeBase, tmp_path: Path
) -> None:
    """A collection of all-minilm (threshold 0.30): a question sharing no word with it is not relevant."""
    kb.create("measured")  # the default embedding model, whose threshold was measured
    write(tmp_path / "more", "lease.md", LEASE)
    kb.add("measured", [tmp_path / "more"])
    kb.sync("measured")
    ask = [{"role": "user", "content": "football scores yesterday"}]
    stream = cove.chat_turn(
        TurnRequest("tiny", ask, {"num_ctx": 4096}, collections=["measured"], strict=True)
    )
    answer = "".join(chunk.content for chunk in stream)
    assert "contain nothing relevant" in answer and stream.citations == []


def test_a_question_about_the_whole_lease_gets_it_whole(cove: Cove, tmp_path: Path) -> None:
    """The knowledge base has no document_text: the document's chunks are put back in order."""
    ask = [{"role": "user", "content": "Summarise the lease"}]
    stream = cove.chat_turn(TurnRequest("tiny", ask, {"num_ctx": 4096}, collections=["contracts"]))
    answer = "".join(chunk.content for chunk in stream)
    (whole,) = stream.citations
    assert whole.whole and whole.file == "lease.md" and whole.where() == "lease.md, whole document"
    # The scripted fake repeats the message it got: the whole lease, in order, once.
    refunds, notice = answer.index("Refunds are paid"), answer.index("90 days notice")
    assert refunds < notice and answer.count("Refunds are paid") == 1


def test_chunks_are_joined_by_their_spans() -> None:
    from cove.chat.retrieval import joined
    from cove.knowledge.documents import Passage

    def piece(text: str, start: int) -> Passage:
        return Passage(0, "c", "f", text, 0.0, start=start, end=start + len(text))

    assert joined([piece("abcdef", 0), piece("defgh", 3)]) == "abcdefgh"  # overlap added once
    assert joined([piece("ab", 0), piece("cd", 4)]) == "ab\n\ncd"  # a gap is a paragraph break
    assert joined([piece("ab", 0), piece("cd", 2)]) == "abcd"
