"""The knowledge base as the CLI, the server and chat turns use it: collections, their folders
and uploads, sync, and search (reranked when a reranker is set or in the store), over one
index file (COVE_HOME/knowledge.db)."""

from __future__ import annotations

import builtins
import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from . import parsers
from .documents import Passage
from .embedder import Embedder, embedder_for
from .errors import CollectionNotFound, DocumentRefused
from .index import Collection, DocumentRow, KnowledgeIndex, Root, check_name, index_path
from .reranking import EngineReranker, RerankSettings, StoreRerankers, checked_setting, choose
from .search import Reranker
from .search import relevant as relevant_for
from .search import search as run_search
from .sync import Progress, Syncer, SyncReport, no_progress

#: The embedding model a new collection gets when none is named.
FALLBACK_MODEL = "all-minilm"
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def default_model() -> str:
    try:
        from ..store.catalog import DEFAULT_EMBEDDING_MODEL

        return str(DEFAULT_EMBEDDING_MODEL)
    except ImportError:  # pragma: no cover - before the catalog names one
        return FALLBACK_MODEL


@dataclass
class CollectionInfo:
    name: str
    model: str
    dimensions: int | None
    documents: int
    chunks: int
    created: str
    last_sync: str | None
    roots: list[Root] = field(default_factory=list)
    #: Its reranking: "auto" (a reranker in the store, if any), "off", or a reranking model's name.
    rerank: str = "auto"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "rerank": self.rerank,
            "dimensions": self.dimensions,
            "documents": self.documents,
            "chunks": self.chunks,
            "created": self.created,
            "last_sync": self.last_sync,
            "roots": [
                {"path": r.path, "include": list(r.include), "exclude": list(r.exclude)} for r in self.roots
            ],
        }


def document_json(row: DocumentRow) -> dict[str, Any]:
    return {
        "file": row.file,
        "path": row.path,
        "status": row.status,
        "size": row.size,
        "pages": row.pages,
        "pages_without_text": row.pages_without_text,
        "chunks": row.chunks,
        "problems": row.problems,
        "indexed_at": row.indexed_at,
    }


@dataclass
class Found:
    """A search's passages, best first, the reranker that ordered them (None: the fused order),
    and, when the reranker failed and the fused order stands, what went wrong."""

    passages: builtins.list[Passage]
    reranked_by: str | None = None
    warning: str | None = None


def passage_json(p: Passage) -> dict[str, Any]:
    """The shape `cove kb search --json` and the search API give."""
    return {
        "file": p.file,
        "page": p.page,
        "heading": " > ".join(p.heading) or None,
        "heading_path": list(p.heading),
        "text": p.text,
        "score": p.score,
        "chunk_id": p.chunk_id,
        "collection": p.collection,
        "similarity": None if p.similarity is None else round(p.similarity, 4),
        "start": p.start,
        "end": p.end,
    }


def safe_name(name: str) -> str:
    """An uploaded file's name made harmless: its last component only (either slash, a drive),
    no control, format (RTL marks) or reserved characters, no leading dots, at most 120 long."""
    name = re.split(r"[\\/]", name)[-1].split(":")[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).strip(" ")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = stem.strip(" .")[:100] or "upload"  # no hidden file, no "..", no trailing dot (Windows)
    suffix = suffix.strip(" ")
    if stem.upper() in {
        "CON",
        "PRN",
        "AUX",
        "NUL",
        *(f"COM{i}" for i in range(10)),
        *(f"LPT{i}" for i in range(10)),
    }:
        stem = f"_{stem}"
    return f"{stem}.{suffix[:16].lower()}" if suffix else stem


def upload_name(filename: str) -> str:
    """The safe name an upload is stored under; a type cove cannot index is refused up front."""
    name = safe_name(filename)
    if not parsers.is_supported(Path(name)):
        shown = Path(name).suffix or "without a suffix"
        raise DocumentRefused(
            f"{name}: files of type '{shown}' cannot be indexed (see `cove kb` help for the formats)"
        )
    return name


class KnowledgeBase:
    """Collections of documents, indexed for search; thread-safe, one sync per collection at a time."""

    def __init__(
        self,
        cove: Any,
        *,
        path: Path | None = None,
        embedder_of: Callable[[str], Embedder] | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.cove = cove
        self.home: Path = cove.settings.home
        self.index = KnowledgeIndex(path or index_path(self.home))
        self._embedder_of = embedder_of or (lambda model: embedder_for(cove, model))
        self._embedders: dict[str, Embedder] = {}
        #: A fixed reranker for every search (tests); else each search picks one (reranking.py).
        self.reranker = reranker
        self.rerank_settings = RerankSettings(self.index)
        self._rerankers = StoreRerankers(cove)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def close(self) -> None:
        self.index.close()

    def embedder(self, model: str) -> Embedder:
        with self._guard:
            if model not in self._embedders:
                self._embedders[model] = self._embedder_of(model)
            return self._embedders[model]

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- collections -------------------------------------------------------------------------

    def create(self, name: str, model: str | None = None, rerank: str | None = None) -> CollectionInfo:
        """A new collection; `rerank`: a reranking model's name, "off", or None/"auto"."""
        setting = checked_setting(self.cove, rerank)  # a wrong reranker is refused before anything
        self.index.create(name, model or default_model())
        self.rerank_settings.set(name, setting)
        return self.info(name)

    def set_rerank(self, name: str, rerank: str | None) -> CollectionInfo:
        """Change how the collection's searches are reranked (see `create`)."""
        self.rerank_settings.set(name, checked_setting(self.cove, rerank))
        return self.info(name)

    def info(self, name: str) -> CollectionInfo:
        col = self.index.collection(name)
        docs, chunks = self.index.counts(name)
        return CollectionInfo(
            col.name,
            col.model,
            col.dimensions,
            docs,
            chunks,
            col.created,
            col.last_sync,
            col.roots,
            self.rerank_settings.get(name),
        )

    def list(self) -> builtins.list[CollectionInfo]:
        return [self.info(c.name) for c in self.index.collections()]

    def drop(self, name: str) -> None:
        check_name(name)
        self.index.drop(name)
        shutil.rmtree(self.upload_folder(name), ignore_errors=True)

    def upload_folder(self, name: str) -> Path:
        return self.home / "knowledge" / check_name(name)

    def save_upload(self, name: str, filename: str, data: bytes) -> str:
        """An uploaded file kept in the collection's upload folder (a watched root) under a safe
        name; the same name again replaces it (a new version). Returns the name it got."""
        col = self.index.collection(name)
        folder = self.upload_folder(name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / upload_name(filename)
        partial = folder / f".{target.name}.part"  # hidden: a sync running now does not see it
        partial.write_bytes(data)
        os.replace(partial, target)
        if str(folder.resolve()) not in {r.path for r in col.roots}:
            self.index.add_root(name, Root(str(folder.resolve())))
        return target.name

    # -- what a collection holds ---------------------------------------------------------------

    def add(
        self, name: str, paths: Iterable[str | Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
    ) -> builtins.list[Root]:
        """Files or folders (recursive) the collection keeps in step with; indexed at the next sync."""
        self.index.collection(name)  # a missing collection is the error, not the path
        roots = []
        for raw in paths:
            path = Path(raw).expanduser()
            if not path.exists():
                raise BadRequest(f"no such file or folder: {path}")
            roots.append(Root(str(path.resolve()), tuple(include), tuple(exclude)))
        for root in roots:
            self.index.add_root(name, root)
        return roots

    def documents(self, name: str) -> builtins.list[DocumentRow]:
        return self.index.documents(name)

    def remove(self, name: str, paths: Sequence[str] = (), *, all: bool = False) -> int:
        """Documents gone from the index (text, vectors, search rows), and not added back by the
        next sync: a folder added is forgotten, a file inside one is excluded from it."""
        col = self.index.collection(name)
        if all:
            self.index.remove_roots(name, [r.path for r in col.roots])
            return self.index.delete_documents(col, [d.path for d in self.index.documents(name)])
        if not paths:
            raise BadRequest("name the files to remove, or use --all")
        docs = self.index.documents(name)
        doomed: set[str] = set()
        for raw in paths:
            matched = self._matching(col, docs, raw)
            if not matched:
                raise BadRequest(f"'{raw}' is not in collection '{name}' (see `cove kb ls {name}`)")
            doomed |= matched
        return self.index.delete_documents(col, sorted(doomed))

    def _matching(self, col: Collection, docs: builtins.list[DocumentRow], raw: str) -> set[str]:
        absolute = str(Path(raw).expanduser().resolve())
        roots = [r for r in col.roots if r.path == absolute]
        if roots:
            self.index.remove_roots(col.name, [absolute])
            prefix = absolute.rstrip(os.sep) + os.sep
            return {d.path for d in docs if d.path == absolute or d.path.startswith(prefix)}
        matched = {d.path for d in docs if raw in (d.file, d.path) or d.path == absolute}
        for doc in (d for d in docs if d.path in matched):
            for root in col.roots:
                if doc.path == root.path:  # a file added by itself: forget it
                    self.index.remove_roots(col.name, [root.path])
                elif doc.path.startswith(root.path.rstrip(os.sep) + os.sep):
                    self.index.add_root(col.name, Root(root.path, root.include, (*root.exclude, doc.file)))
        return matched

    # -- sync and search -----------------------------------------------------------------------

    def sync(
        self,
        name: str,
        progress: Progress = no_progress,
        *,
        ocr: bool = False,
        model: str | None = None,
        cancel: threading.Event | None = None,
    ) -> SyncReport:
        with self._lock(name):
            message = None
            col = self.index.collection(name)
            if model is not None and model != col.model:
                count = self.index.set_model(name, model)
                message = (
                    f"embedding model changed from {col.model} to {model}: re-embedding {count} documents"
                )
                col = self.index.collection(name)
            syncer = Syncer(
                self.index, col, self.embedder(col.model), ocr=ocr, progress=progress, cancel=cancel
            )
            report = syncer.run()
            report.message = message
            return report

    def search(
        self, names: Sequence[str], query: str, k: int = 5, mode: str = "hybrid", rerank: str | None = None
    ) -> builtins.list[Passage]:
        return self.find(names, query, k, mode, rerank).passages

    def find(
        self, names: Sequence[str], query: str, k: int = 5, mode: str = "hybrid", rerank: str | None = None
    ) -> Found:
        """The k best passages, and how they were ordered. `rerank`: a reranking model's name,
        "off", or None for the collections' own settings (see reranking.choose). Reranked, a
        passage's `score` is the reranker's; its `similarity` (the relevance threshold's) stays."""
        if not names:
            raise BadRequest("name at least one collection to search")
        settings = [self.rerank_settings.get(n) for n in dict.fromkeys(names)]
        fixed = self.reranker if rerank is None else None
        model = None if fixed is not None else choose(self.cove, settings, rerank, self._rerankers.names)
        engine = EngineReranker(self.cove.rerank, model) if model else None
        passages = run_search(
            self.index,
            lambda col: self.embedder(col.model),
            names,
            query,
            k=k,
            mode=mode,
            reranker=fixed or engine,
        )
        if engine is not None and engine.failure:
            return Found(passages, None, engine.failure)
        return Found(passages, model or ("custom" if fixed else None))

    def relevant(self, passages: Sequence[Passage]) -> builtins.list[Passage]:
        """The passages that pass their collection's model's measured relevance threshold."""
        models: dict[str, str] = {}
        kept = []
        for p in passages:
            if p.collection not in models:
                try:
                    models[p.collection] = self.index.collection(p.collection).model
                except CollectionNotFound:
                    continue
            kept.extend(relevant_for([p], models[p.collection]))
        return kept
