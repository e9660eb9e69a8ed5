"""A knowledge base over a fake embedder (hashed bag of words), for tests that need no model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cove.knowledge.embedder import HashEmbedder
from cove.knowledge.service import KnowledgeBase

FAKE_MODEL = "hash-bow"


class CountingEmbedder(HashEmbedder):
    """Counts what it embeds; `fail_after` raises KeyboardInterrupt on that call (a Ctrl-C)."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(FAKE_MODEL)
        self.calls = 0
        self.texts: list[str] = []
        self.fail_after = fail_after

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        self.texts.extend(texts)
        return super().embed(texts)


def make_kb(home: Path, embedder: HashEmbedder | None = None) -> KnowledgeBase:
    fake = SimpleNamespace(settings=SimpleNamespace(home=home))
    chosen = embedder or HashEmbedder(FAKE_MODEL)
    return KnowledgeBase(fake, embedder_of=lambda model: chosen)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def consistent(kb: KnowledgeBase, name: str) -> int:
    """The collection's chunk rows, search rows and vectors agree; returns how many chunks."""
    chunks, fts, vec = kb.index.consistency(name)
    assert chunks == fts == vec, (chunks, fts, vec)
    docs = kb.documents(name)
    assert sum(d.chunks for d in docs) == chunks
    return chunks
