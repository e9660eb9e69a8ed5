"""Search: reciprocal rank fusion, the three modes, FTS syntax in a question, several collections,
binary-quantised candidates above the exact limit, and the relevance threshold."""

from __future__ import annotations

from pathlib import Path

import pytest
from kb_helpers import FAKE_MODEL, make_kb, write

from cove.errors import BadRequest
from cove.knowledge import search as search_module
from cove.knowledge.documents import Passage
from cove.knowledge.search import fts_query, relevant, rrf
from cove.knowledge.service import KnowledgeBase

NOTES = {
    "refunds.md": "# Refunds\n\nA refund is paid within thirty days of the return reaching the warehouse.",
    "shipping.md": "# Shipping\n\nParcels leave the warehouse every Monday by courier.",
    "fruit.txt": "Bananas are yellow and apples are red or green.",
}


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    kb = make_kb(tmp_path / "home")
    kb.create("docs", FAKE_MODEL)
    for name, text in NOTES.items():
        write(tmp_path / "d", name, text)
    kb.add("docs", [tmp_path / "d"])
    kb.sync("docs")
    return kb


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]], k=60)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_rrf_weighs_each_ranking() -> None:
    fused = rrf([[1, 2], [2, 1]], k=10, weights=[0.5, 1.0])  # the second ranking counts double
    assert [i for i, _ in fused] == [2, 1]
    assert fused[0][1] == pytest.approx(0.5 / 12 + 1 / 11)


def test_question_syntax_is_text_not_fts_operators() -> None:
    assert fts_query('what "is" NEAR(a AND b) -x*') == '"near" OR "b" OR "x"'  # stopwords left out
    assert fts_query("what is it") == '"what" OR "is" OR "it"'  # unless nothing else is left
    assert fts_query("?!") is None


def test_words_are_matched_by_their_stems(kb: KnowledgeBase) -> None:
    [hit] = kb.search(["docs"], "refunding returns", k=1, mode="bm25")  # "refund", "return"
    assert hit.file == "refunds.md"


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "vector"])
def test_each_mode_finds_the_passage(kb: KnowledgeBase, mode: str) -> None:
    [best, *_] = kb.search(["docs"], "when is a refund paid", k=3, mode=mode)
    assert best.file == "refunds.md"
    assert best.heading == ("Refunds",)
    assert best.text.endswith("reaching the warehouse.")
    assert best.similarity is not None and best.similarity > 0


def test_a_passage_quotes_its_span(kb: KnowledgeBase, tmp_path: Path) -> None:
    [best] = kb.search(["docs"], "parcels courier", k=1)
    whole = (tmp_path / "d" / "shipping.md").read_text()
    assert whole[best.start : best.end] == best.text


def test_bad_searches_are_refused(kb: KnowledgeBase) -> None:
    with pytest.raises(BadRequest, match="mode"):
        kb.search(["docs"], "x", mode="magic")
    with pytest.raises(BadRequest, match="empty"):
        kb.search(["docs"], "   ")
    with pytest.raises(BadRequest, match="k must"):
        kb.search(["docs"], "x", k=0)


def test_several_collections_are_searched_together(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.create("other", FAKE_MODEL)
    write(tmp_path / "o", "walrus.txt", "The walrus migrates north in spring.")
    kb.add("other", [tmp_path / "o"])
    kb.sync("other")
    found = kb.search(["docs", "other"], "walrus migrates", k=2)
    assert found[0].collection == "other" and found[0].file == "walrus.txt"


def test_large_collections_search_through_quantised_candidates(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(40):
        write(tmp_path / "d", f"n{i}.txt", f"note {i} about topic{i} and subject{i % 7}")
    kb.sync("docs")
    exact = kb.search(["docs"], "note 17 about topic17 and subject3", k=3, mode="vector")
    monkeypatch.setattr(search_module, "CANDIDATES", 12)  # fewer than the 43 chunks: signs first
    monkeypatch.setattr(search_module, "CANDIDATES_PER_RESULT", 0)
    coarse = kb.search(["docs"], "note 17 about topic17 and subject3", k=3, mode="vector")
    assert coarse[0].file == exact[0].file == "n17.txt"
    assert coarse[0].score == pytest.approx(1.0)
    assert len(coarse) == 3


def test_a_reranker_reorders(kb: KnowledgeBase) -> None:
    kb.reranker = lambda query, texts: [1.0 if "Bananas" in t else 0.0 for t in texts]
    [best, *_] = kb.search(["docs"], "refund warehouse", k=3)
    assert best.file == "fruit.txt"


def _passage(similarity: float | None) -> Passage:
    return Passage(chunk_id=1, collection="c", file="f", text="t", score=0.1, similarity=similarity)


def test_relevance_uses_the_measured_threshold() -> None:
    limit = search_module.RELEVANCE["all-minilm"]
    kept = relevant([_passage(limit + 0.01), _passage(limit - 0.01), _passage(None)], "all-minilm")
    assert [p.similarity for p in kept] == [limit + 0.01]
    assert len(relevant([_passage(0.0)], "unmeasured-model")) == 1  # no threshold: all kept
