"""Which reranker a knowledge-base search uses: each collection's setting (kept in knowledge.db
beside the collection), the one a search names, or a reranking model in the store; and the
reranker as a search calls it, through the engine's rerank call.

A collection's setting is "auto" (rerank with a reranking model when the store has one: the
first by name), "off", or a model's name. A search may name a model, or turn reranking off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest, CoveError
from .index import KnowledgeIndex

log = logging.getLogger(__name__)

AUTO, OFF = "auto", "off"

SCHEMA = """
CREATE TABLE IF NOT EXISTS collection_rerank (
    collection INTEGER PRIMARY KEY REFERENCES collections(id) ON DELETE CASCADE,
    setting TEXT NOT NULL
);
"""

#: How a search picks its reranker: None (the collections' settings), OFF, or a model's name.
Choice = str | None


class RerankSettings:
    """The per-collection setting, in its own table of the index's database."""

    def __init__(self, index: KnowledgeIndex) -> None:
        self.index = index
        with index.db.write() as c:
            c.execute(SCHEMA)

    def get(self, name: str) -> str:
        cid = self.index.collection(name).id
        with self.index.db.read() as c:
            row = c.execute("SELECT setting FROM collection_rerank WHERE collection = ?", (cid,)).fetchone()
        return str(row[0]) if row else AUTO

    def set(self, name: str, setting: str) -> None:
        cid = self.index.collection(name).id
        with self.index.db.write() as c:
            if setting == AUTO:
                c.execute("DELETE FROM collection_rerank WHERE collection = ?", (cid,))
            else:
                c.execute(
                    "INSERT INTO collection_rerank(collection, setting) VALUES (?, ?) "
                    "ON CONFLICT(collection) DO UPDATE SET setting = excluded.setting",
                    (cid, setting),
                )


class StoreRerankers:
    """The reranking models in the store, by name, looked up at most every `ttl_s` seconds: a
    search should not read every manifest, and a reranker just pulled is used seconds later."""

    def __init__(self, cove: Any, ttl_s: float = 2.0) -> None:
        self.cove = cove
        self.ttl_s = ttl_s
        self._names: list[str] = []
        self._at = -ttl_s
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                self._names, self._at = reranker_names(self.cove), time.monotonic()
            return list(self._names)


def reranker_names(cove: Any) -> list[str]:
    """The reranking models in the store, by name (none for a knowledge base with no store)."""
    from ..store import catalog

    models = getattr(cove, "models", None)
    if models is None:
        return []
    return sorted(m.name for m in models() if catalog.is_reranker(m))


def check_reranker(cove: Any, model: str) -> str:
    """`model`'s stored name when it is a reranking model in the store; else a clear error."""
    from ..store import catalog

    manifest = cove.model(model)  # ModelNotFound (a 404) when it is not there
    if not catalog.is_reranker(manifest):
        kind = catalog.model_kind(manifest)
        raise BadRequest(f"{manifest.name} is a {kind} model, not a reranker (`cove list` shows each KIND)")
    return str(manifest.name)


def checked_setting(cove: Any, setting: str | None) -> str:
    """A collection's setting as given to create or change it: auto, off, or a stored reranker."""
    if setting is None or setting.strip().lower() == AUTO:
        return AUTO
    if setting.strip().lower() in (OFF, "none", "no"):
        return OFF
    return check_reranker(cove, setting.strip())


def choose(
    cove: Any, settings: Sequence[str], choice: Choice, in_store: Callable[[], list[str]]
) -> str | None:
    """The reranker a search over collections with these settings uses, or None for none.

    A search's own choice wins; else the first collection that names a model; else, unless every
    collection has it off, the first reranking model in the store."""
    if choice is not None:
        return None if choice.strip().lower() == OFF else check_reranker(cove, choice)
    named = [s for s in settings if s not in (AUTO, OFF)]
    if named:
        return named[0]
    if settings and all(s == OFF for s in settings):
        return None
    found = in_store()
    return found[0] if found else None


@dataclass
class EngineReranker:
    """A search's reranker: scores through the engine's rerank call. A failure (the engine fell
    over, the model went) is kept in `failure` and raised, so the search keeps its fused order."""

    rerank: Callable[..., Any]
    model: str
    failure: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, query: str, documents: list[str]) -> list[float]:
        if not documents:
            return []
        try:
            return list(self.rerank(self.model, query, documents).scores())
        except CoveError as exc:
            with self._lock:
                self.failure = f"reranking with {self.model} failed ({exc}); passages are in fused order"
            log.warning("%s", self.failure)
            raise
