"""Bringing a collection in step with its folders: new, changed, renamed and deleted files.

A file whose size and modification time are those recorded is skipped without being read. A
changed one is hashed first (a touched file with the same bytes is not parsed again), parsed,
chunked, embedded and written in one transaction, so an interrupted sync (Ctrl-C, kill -9)
leaves every document either as it was or wholly new, and the next sync redoes only the rest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from . import chunking, parsers
from .documents import Chunk, ParsedDocument
from .embedder import Embedder
from .errors import DocumentRefused
from .index import REFUSED, Collection, DocumentRow, Indexed, KnowledgeIndex, Root

#: Embedding the chunks of one document in pieces of this many, so progress moves on big files.
EMBED_BATCH = 64


@dataclass(frozen=True)
class Found:
    """A file a root holds now."""

    path: str  # absolute, resolved
    file: str  # as shown: relative to the folder added (or the file's own name)
    mtime_ns: int
    size: int


@dataclass
class SyncProgress:
    files_done: int
    files_total: int
    pages: int
    chunks: int
    elapsed_s: float
    current: str = ""

    @property
    def rate(self) -> float:
        """Files per second so far."""
        return self.files_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.files_done == 0 or self.rate == 0:
            return None
        return (self.files_total - self.files_done) / self.rate


@dataclass
class SyncReport:
    collection: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    without_text: list[tuple[str, list[int]]] = field(default_factory=list)  # (file, pages)
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    message: str | None = None  # e.g. that the collection is being re-embedded

    def to_json(self) -> dict[str, object]:
        return {
            "collection": self.collection,
            "added": self.added,
            "updated": self.updated,
            "renamed": [{"from": a, "to": b} for a, b in self.renamed],
            "removed": self.removed,
            "unchanged": self.unchanged,
            "refused": [{"file": f, "reason": r} for f, r in self.refused],
            "pages_without_text": [{"file": f, "pages": p} for f, p in self.without_text],
            "pages": self.pages,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "message": self.message,
        }


Progress = Callable[[SyncProgress], None]


def no_progress(_: SyncProgress) -> None:
    pass


class ChangedWhileRead(Exception):
    pass


# -- finding files ---------------------------------------------------------------------------


def scan(root: Root, problems: list[tuple[str, str]]) -> Iterator[Found]:
    """Supported files under a root (or the root itself), hidden entries and symlink loops skipped."""
    base = Path(root.path)
    try:
        info = base.stat()
    except OSError as exc:
        problems.append((base.name or str(base), f"cannot be read: {exc.strerror or exc}"))
        return
    if stat.S_ISREG(info.st_mode):
        if parsers.is_supported(base):
            yield Found(str(base), base.name, info.st_mtime_ns, info.st_size)
        return
    seen: set[tuple[int, int]] = {(info.st_dev, info.st_ino)}
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append((_relative(base, Path(folder)), f"folder cannot be read: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            found = _entry(base, entry, seen, stack, problems)
            if found is not None and _wanted(found.file, root):
                yield found


def _entry(
    base: Path,
    entry: os.DirEntry[str],
    seen: set[tuple[int, int]],
    stack: list[Path],
    problems: list[tuple[str, str]],
) -> Found | None:
    path = Path(entry.path)
    try:
        info = entry.stat()  # follows a link: a linked file or folder is indexed like its target
    except OSError:
        if entry.is_symlink():
            problems.append((_relative(base, path), "is a broken symbolic link"))
        return None
    if stat.S_ISDIR(info.st_mode):
        key = (info.st_dev, info.st_ino)
        if key not in seen:  # a link back to a folder already walked (a loop) is not followed
            seen.add(key)
            stack.append(path)
        return None
    if not stat.S_ISREG(info.st_mode) or not parsers.is_supported(path):
        return None
    return Found(str(path), _relative(base, path), info.st_mtime_ns, info.st_size)


def _relative(base: Path, path: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def _wanted(file: str, root: Root) -> bool:
    name = PurePosixPath(file).name
    if root.include and not any(fnmatchcase(file, g) or fnmatchcase(name, g) for g in root.include):
        return False
    return not any(fnmatchcase(file, g) or fnmatchcase(name, g) for g in root.exclude)


def file_hash(path: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- one sync --------------------------------------------------------------------------------


class Syncer:
    """One sync of one collection: what changed is read, what went is deleted."""

    def __init__(
        self,
        index: KnowledgeIndex,
        col: Collection,
        embedder: Embedder,
        *,
        ocr: bool = False,
        progress: Progress = no_progress,
        cancel: threading.Event | None = None,
    ) -> None:
        self.index = index
        self.col = col
        self.embedder = embedder
        self.ocr = ocr
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.report = SyncReport(col.name)
        self.started = time.monotonic()

    def run(self) -> SyncReport:
        found: dict[str, Found] = {}
        for root in self.col.roots:
            for item in scan(root, self.report.refused):
                found.setdefault(item.path, item)
        known = {row.path: row for row in self.index.documents(self.col.name)}
        todo = [f for f in found.values() if self._needs_reading(f, known.get(f.path))]
        self.report.unchanged = len(found) - len(todo)
        gone = {path: row for path, row in known.items() if path not in found}
        by_hash = {row.hash: row for row in gone.values() if row.hash and row.status != REFUSED}
        for done, item in enumerate(todo):
            if self.cancel.is_set():
                break
            self._tick(done, len(todo), item.file)
            self._one(item, known.get(item.path), by_hash, gone)
        if not self.cancel.is_set():
            removed = [row.file for row in gone.values()]
            self.index.delete_documents(self.col, list(gone))
            self.report.removed.extend(removed)
            self.index.synced(self.col.name)
        self._tick(len(todo), len(todo), "")
        self.report.seconds = time.monotonic() - self.started
        return self.report

    def _needs_reading(self, item: Found, row: DocumentRow | None) -> bool:
        if row is None or row.status == REFUSED:
            return True  # a refused file is tried again: its reason (permissions, say) may be gone
        if self.ocr and row.pages_without_text:
            return True
        return (row.mtime_ns, row.size) != (item.mtime_ns, item.size)

    def _tick(self, done: int, total: int, current: str) -> None:
        elapsed = time.monotonic() - self.started
        self.progress(SyncProgress(done, total, self.report.pages, self.report.chunks, elapsed, current))

    def _one(
        self,
        item: Found,
        row: DocumentRow | None,
        by_hash: dict[str, DocumentRow],
        gone: dict[str, DocumentRow],
    ) -> None:
        try:
            digest = file_hash(item.path)
        except OSError as exc:
            return self._refuse(item, f"cannot be read: {exc.strerror or exc}")
        if row is not None and row.hash == digest and row.status != REFUSED and not self.ocr:
            return self.index.touch_document(self.col, item.path, item.mtime_ns, item.size)
        moved = by_hash.pop(digest, None) if row is None else None
        if moved is not None and moved.path in gone:
            del gone[moved.path]
            self.index.move_document(self.col, moved.path, item.path, item.file, item.mtime_ns)
            self.report.renamed.append((moved.file, item.file))
            return None
        try:
            doc, facts = self._read_stable(item)
        except DocumentRefused as exc:
            return self._refuse(item, str(exc))
        except ChangedWhileRead:
            self.report.refused.append(
                (item.file, "changed while being read, twice; sync again once it is saved")
            )
            return None
        chunks = chunking.chunk(doc, self.embedder.count_tokens)
        vectors = self._embed([c.text for c in chunks])
        self.index.write_document(self.col, _indexed(facts, doc, chunks, vectors))
        fresh = row is None or row.status == REFUSED  # never indexed before: added, not updated
        (self.report.added if fresh else self.report.updated).append(item.file)
        self.report.pages += doc.pages or 1
        self.report.chunks += len(chunks)
        if doc.pages_without_text:
            self.report.without_text.append((item.file, list(doc.pages_without_text)))
        return None

    def _read_stable(self, item: Found) -> tuple[ParsedDocument, Indexed]:
        """Parse, and parse again once if the file changed meanwhile (an editor still saving)."""
        for _ in range(2):
            before = _stat(item.path)
            digest = file_hash(item.path)
            doc = parsers.parse(Path(item.path), ocr=self.ocr)
            if _stat(item.path) == before:
                mtime_ns, size, _ino = before
                return doc, Indexed(item.path, item.file, digest, mtime_ns, size)
        raise ChangedWhileRead(item.file)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            vectors.extend(self.embedder.embed(texts[start : start + EMBED_BATCH]))
        return vectors

    def _refuse(self, item: Found, reason: str) -> None:
        self.report.refused.append((item.file, reason))
        self.index.write_document(
            self.col,
            Indexed(item.path, item.file, "", item.mtime_ns, item.size, status=REFUSED, problems=[reason]),
        )


def _stat(path: str) -> tuple[int, int, int]:
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DocumentRefused(f"cannot be read: {exc.strerror or exc}") from exc
    return info.st_mtime_ns, info.st_size, info.st_ino


def _indexed(facts: Indexed, doc: ParsedDocument, chunks: list[Chunk], vectors: list[list[float]]) -> Indexed:
    facts.pages = doc.pages
    facts.pages_without_text = list(doc.pages_without_text)
    facts.problems = list(doc.problems)
    if not chunks and not doc.problems and not doc.pages_without_text:
        facts.problems.append("has no text to index")
    facts.chunks = chunks
    facts.vectors = vectors
    return facts
