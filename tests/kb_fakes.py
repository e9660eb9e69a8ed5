"""A knowledge base for chat-turn tests: documents held in memory, word-overlap search, a threshold."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

from cove.knowledge.documents import Passage
from cove.knowledge.errors import CollectionNotFound

WORD = re.compile(r"\w+")
#: Words too common to count as a match (so "what is the ..." alone finds nothing).
COMMON = {"the", "a", "an", "is", "what", "of", "to", "in", "and", "does", "do", "it", "this", "say", "about"}


@dataclass
class FakeDocument:
    file: str
    #: One passage per page (page numbers from 1).
    pages: list[str]


@dataclass
class FakeKnowledge:
    """Has `search`, `relevant` and `document_text`, as cove.knowledge.service.KnowledgeBase does."""

    collections: dict[str, list[FakeDocument]] = field(default_factory=dict)
    queries: list[tuple[list[str], str, int]] = field(default_factory=list)

    def add(self, collection: str, file: str, *pages: str) -> None:
        self.collections.setdefault(collection, []).append(FakeDocument(file, list(pages)))

    def search(self, names: Sequence[str], query: str, k: int = 5, mode: str = "hybrid") -> list[Passage]:
        self.queries.append((list(names), query, k))
        wanted = {w.lower() for w in WORD.findall(query)} - COMMON
        found: list[Passage] = []
        for name in names:
            if name not in self.collections:
                raise CollectionNotFound(f"no collection named '{name}' (see `cove kb ls`)")
            for doc in self.collections[name]:
                start = 0
                for page, text in enumerate(doc.pages, 1):
                    words = {w.lower() for w in WORD.findall(text)}
                    score = len(wanted & words) / (len(wanted) or 1)
                    chunk_id = len(found) + 1000 * (list(self.collections).index(name) + 1)
                    found.append(
                        Passage(
                            chunk_id, name, doc.file, text, score, page, ("Terms",), start, start + len(text)
                        )
                    )
                    start += len(text) + 2
        return sorted(found, key=lambda p: -p.score)[:k]

    def info(self, name: str) -> SimpleNamespace:
        if name not in self.collections:
            raise CollectionNotFound(f"no collection named '{name}' (see `cove kb ls`)")
        return SimpleNamespace(name=name)

    def list(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=name) for name in self.collections]

    def relevant(self, passages: Sequence[Passage]) -> list[Passage]:
        return [p for p in passages if p.score > 0]

    def document_text(self, collection: str, file: str) -> str | None:
        for doc in self.collections.get(collection, []):
            if doc.file == file:
                return "\n\n".join(doc.pages)
        return None
