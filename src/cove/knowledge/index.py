"""The knowledge index on disk: collections, documents and chunks in COVE_HOME/knowledge.db, with
an FTS5 table (BM25) and a sqlite-vec table (vectors) per collection, kept in step with the
chunk rows in one transaction per document; deleted text and vectors are really gone."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import sqlite_vec

from ..errors import BadRequest, DiskFull
from ..history.db import BUSY_TIMEOUT_MS, Database, many, one
from .documents import Chunk
from .errors import CollectionExists, CollectionNotFound
from .signs import Signs, SignsCache

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    dimensions INTEGER,
    created TEXT NOT NULL,
    last_sync TEXT,
    generation INTEGER NOT NULL DEFAULT 0  -- a new random value with every change to its chunks
);
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY,
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    include TEXT NOT NULL DEFAULT '[]',
    exclude TEXT NOT NULL DEFAULT '[]',
    UNIQUE (collection, path)
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    file TEXT NOT NULL,
    hash TEXT,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    pages INTEGER,
    pages_without_text TEXT NOT NULL DEFAULT '[]',
    problems TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0,
    indexed_at TEXT NOT NULL,
    UNIQUE (collection, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    page INTEGER,
    heading TEXT NOT NULL DEFAULT '[]',
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    vector BLOB  -- float32, the embedding model's own; NULL until embedded
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document);
CREATE INDEX IF NOT EXISTS documents_hash ON documents(collection, hash);
"""

#: The read-only connections searches use, each by one thread at a time (see _reading).
READERS = ("bm25", "vectors")
#: Document frequencies kept between searches (they are only read again after a write).
FREQUENCIES_KEPT = 4096
QUERY = apsw.FTS5_TOKENIZE_QUERY

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Statuses a document row can have.
INDEXED, REFUSED = "indexed", "refused"


def index_path(home: Path) -> Path:
    return home / "knowledge.db"


def check_name(name: str) -> str:
    """A collection name is also a folder name (its uploads), so it is kept plain."""
    if not NAME.fullmatch(name) or name.endswith("."):
        raise BadRequest(
            f"invalid collection name {name[:70]!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Collection:
    id: int
    name: str
    model: str
    dimensions: int | None
    created: str
    last_sync: str | None
    roots: list[Root] = field(default_factory=list)


@dataclass(frozen=True)
class Root:
    path: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass
class DocumentRow:
    id: int
    path: str  # absolute, resolved: the key a sync matches files by
    file: str  # as shown and cited: relative to the folder it was added with
    hash: str | None
    mtime_ns: int
    size: int
    pages: int | None
    pages_without_text: list[int]
    problems: list[str]
    status: str
    chunks: int
    indexed_at: str


@dataclass
class Indexed:
    """What one document's sync writes: its file facts, what parsing found, and its chunks."""

    path: str
    file: str
    hash: str
    mtime_ns: int
    size: int
    status: str = INDEXED
    pages: int | None = None
    pages_without_text: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)


def _fts(cid: int) -> str:
    return f"fts_{cid}"


def _vec(cid: int) -> str:
    return f"vec_{cid}"


def vector_blob(vector: Sequence[float]) -> bytes:
    return sqlite_vec.serialize_float32(list(vector))


class KnowledgeIndex:
    """The open knowledge.db: one apsw connection (the history's conventions), sqlite-vec loaded."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path)
        conn = self.db.conn
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        # Not FULL as for the history: a commit lost to a power cut is only a document the next
        # sync reads again, and 10,000 small files should not cost 10,000 flushes to the disk.
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._write() as c:
            c.execute(SCHEMA)
            columns = {row[1] for row in c.execute("PRAGMA table_info(chunks)")}
            if "vector" not in columns:  # an index made before vectors were kept in the chunk rows
                c.execute("ALTER TABLE chunks ADD COLUMN vector BLOB")
            columns = {row[1] for row in c.execute("PRAGMA table_info(collections)")}
            if "generation" not in columns:  # an index made before the signs were held in memory
                c.execute("ALTER TABLE collections ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
        self._readers: dict[str, apsw.Connection] = {}
        self._reader_locks = {name: threading.Lock() for name in READERS}
        self._signs = SignsCache()
        self._frequencies: dict[tuple[int, int, str], int] = {}

    def close(self) -> None:
        for name, lock in self._reader_locks.items():
            with lock:
                conn = self._readers.pop(name, None)
                if conn is not None:
                    conn.close()
        self.db.close()

    @contextmanager
    def _reading(self, name: str) -> Iterator[apsw.Connection]:
        """A read transaction on a read-only connection of its own (one of READERS): the BM25
        half of a hybrid search runs on another thread while the vector half runs on this one,
        and neither waits for a sync's writes on the main connection (WAL lets all read at once)."""
        with self._reader_locks[name]:
            conn = self._readers.get(name)
            if conn is None:
                conn = apsw.Connection(str(self.db.path), flags=apsw.SQLITE_OPEN_READONLY)
                conn.set_busy_timeout(BUSY_TIMEOUT_MS)
                conn.enable_load_extension(True)
                conn.load_extension(sqlite_vec.loadable_path())
                conn.enable_load_extension(False)
                self._readers[name] = conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        """A write transaction; a full disk is said as the knowledge base's, not the history's."""
        try:
            with self.db.write() as c:
                yield c
        except DiskFull as exc:
            raise DiskFull(
                f"disk full: the knowledge index in {self.db.path.parent} could not be saved (what "
                "was indexed before is kept); free some space on that disk and sync again"
            ) from exc

    # -- collections -------------------------------------------------------------------------

    def create(self, name: str, model: str) -> Collection:
        check_name(name)
        with self._write() as c:
            if c.execute("SELECT 1 FROM collections WHERE name = ?", (name,)).fetchone():
                raise CollectionExists(f"a collection named '{name}' already exists")
            c.execute(
                "INSERT INTO collections(name, model, created, generation) VALUES (?, ?, ?, random())",
                (name, model, now()),
            )
            cid = c.last_insert_rowid()
            # Porter stemming: "installing" finds "install". secure-delete: a deleted row's terms are
            # removed from the index, not left in its old segments.
            c.execute(
                f"CREATE VIRTUAL TABLE {_fts(cid)} USING fts5("
                "text, tokenize='porter unicode61 remove_diacritics 2')"
            )
            c.execute(f"INSERT INTO {_fts(cid)}({_fts(cid)}, rank) VALUES ('secure-delete', 1)")
        return self.collection(name)

    def collection(self, name: str) -> Collection:
        with self.db.read() as c:
            row = c.execute(
                "SELECT id, name, model, dimensions, created, last_sync FROM collections WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                raise CollectionNotFound(f"no collection named '{name}' (see `cove kb ls`)")
            roots = [
                Root(p, tuple(json.loads(i)), tuple(json.loads(e)))
                for p, i, e in many(
                    c, "SELECT path, include, exclude FROM roots WHERE collection = ? ORDER BY id", (row[0],)
                )
            ]
        cid, cname, model, dims, created, last_sync = row
        return Collection(cid, cname, model, dims, created, last_sync, roots)

    def collections(self) -> list[Collection]:
        with self.db.read() as c:
            names = [r[0] for r in many(c, "SELECT name FROM collections ORDER BY name")]
        return [self.collection(n) for n in names]

    def drop(self, name: str) -> None:
        cid = self.collection(name).id
        with self._write() as c:
            self._clear_vectors(c, cid)
            c.execute(f"DROP TABLE IF EXISTS {_fts(cid)}")
            c.execute(f"DROP TABLE IF EXISTS {_vec(cid)}")
            c.execute("DELETE FROM collections WHERE id = ?", (cid,))  # cascades to roots, docs, chunks
        self._signs.forget(cid)
        self.db.checkpoint()

    def add_root(self, name: str, root: Root) -> None:
        cid = self.collection(name).id
        with self._write() as c:
            c.execute(
                "INSERT INTO roots(collection, path, include, exclude) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(collection, path) DO UPDATE SET "
                "include = excluded.include, exclude = excluded.exclude",
                (cid, root.path, json.dumps(list(root.include)), json.dumps(list(root.exclude))),
            )

    def remove_roots(self, name: str, paths: Iterable[str]) -> None:
        cid = self.collection(name).id
        with self._write() as c:
            for path in paths:
                c.execute("DELETE FROM roots WHERE collection = ? AND path = ?", (cid, path))

    def synced(self, name: str) -> None:
        with self._write() as c:
            c.execute("UPDATE collections SET last_sync = ? WHERE name = ?", (now(), name))

    def set_model(self, name: str, model: str) -> int:
        """A new embedding model: every vector goes, and every document is read again at the next
        sync (its hash forgotten). Returns how many documents that is."""
        col = self.collection(name)
        with self._write() as c:
            self._clear_vectors(c, col.id)
            c.execute(f"DROP TABLE IF EXISTS {_vec(col.id)}")
            c.execute("UPDATE collections SET model = ?, dimensions = NULL WHERE id = ?", (model, col.id))
            c.execute("UPDATE documents SET hash = NULL, mtime_ns = -1 WHERE collection = ?", (col.id,))
            c.execute(
                "UPDATE chunks SET vector = NULL "
                "WHERE document IN (SELECT id FROM documents WHERE collection = ?)",
                (col.id,),
            )
            (count,) = one(c, "SELECT count(*) FROM documents WHERE collection = ?", (col.id,))
            _changed(c, col.id)
        return int(count)

    # -- documents ---------------------------------------------------------------------------

    def documents(self, name: str) -> list[DocumentRow]:
        cid = self.collection(name).id
        with self.db.read() as c:
            rows = many(
                c,
                "SELECT id, path, file, hash, mtime_ns, size, pages, pages_without_text, problems, status, "
                "chunks, indexed_at FROM documents WHERE collection = ? ORDER BY file",
                (cid,),
            )
        return [_document(r) for r in rows]

    def write_document(self, col: Collection, doc: Indexed) -> None:
        """The document's row, chunks, search rows and vectors replaced together, or not at all."""
        with self._write() as c:
            if doc.vectors:
                self._ensure_vectors(c, col, len(doc.vectors[0]))
            row = c.execute(
                "SELECT id FROM documents WHERE collection = ? AND path = ?", (col.id, doc.path)
            ).fetchone()
            if row is not None:
                self._delete_chunks(c, col.id, int(row[0]))
            values = (
                doc.file, doc.hash, doc.mtime_ns, doc.size, doc.pages, json.dumps(doc.pages_without_text),
                json.dumps(doc.problems), doc.status, len(doc.chunks), now(),
            )  # fmt: skip
            if row is None:
                c.execute(
                    "INSERT INTO documents(file, hash, mtime_ns, size, pages, pages_without_text, problems, "
                    "status, chunks, indexed_at, collection, path) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, col.id, doc.path),
                )
                doc_id = c.last_insert_rowid()
            else:
                doc_id = int(row[0])
                c.execute(
                    "UPDATE documents SET file=?, hash=?, mtime_ns=?, size=?, pages=?, pages_without_text=?, "
                    "problems=?, status=?, chunks=?, indexed_at=? WHERE id = ?",
                    (*values, doc_id),
                )
            self._insert_chunks(c, col.id, doc_id, doc.chunks, doc.vectors)
            _changed(c, col.id)

    def move_document(self, col: Collection, old_path: str, new_path: str, file: str, mtime_ns: int) -> None:
        """A renamed file: same content, so its chunks and vectors stay; only where it is changes."""
        with self._write() as c:
            c.execute(
                "UPDATE documents SET path = ?, file = ?, mtime_ns = ? WHERE collection = ? AND path = ?",
                (new_path, file, mtime_ns, col.id, old_path),
            )

    def touch_document(self, col: Collection, path: str, mtime_ns: int, size: int) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE documents SET mtime_ns = ?, size = ? WHERE collection = ? AND path = ?",
                (mtime_ns, size, col.id, path),
            )

    def delete_documents(self, col: Collection, paths: Iterable[str]) -> int:
        deleted = 0
        with self._write() as c:
            for path in paths:
                row = c.execute(
                    "SELECT id FROM documents WHERE collection = ? AND path = ?", (col.id, path)
                ).fetchone()
                if row is None:
                    continue
                self._delete_chunks(c, col.id, int(row[0]))
                c.execute("DELETE FROM documents WHERE id = ?", (row[0],))
                deleted += 1
            if deleted:
                _changed(c, col.id)
        if deleted:
            self.db.checkpoint()  # the WAL would otherwise still hold the deleted pages' text
        return deleted

    def consistency(self, name: str) -> tuple[int, int, int]:
        """(chunk rows, search rows, vectors) of a collection: equal unless the index is broken."""
        col = self.collection(name)
        with self.db.read() as c:
            (chunks,) = one(
                c,
                "SELECT count(*) FROM chunks ch JOIN documents d ON d.id = ch.document "
                "WHERE d.collection = ?",
                (col.id,),
            )
            (fts,) = one(c, f"SELECT count(*) FROM {_fts(col.id)}")
            vec = one(c, f"SELECT count(*) FROM {_vec(col.id)}")[0] if _has_table(c, _vec(col.id)) else 0
        return int(chunks), int(fts), int(vec)

    def counts(self, name: str) -> tuple[int, int]:
        cid = self.collection(name).id
        with self.db.read() as c:
            docs, chunks = one(
                c, "SELECT count(*), coalesce(sum(chunks), 0) FROM documents WHERE collection = ?", (cid,)
            )
        return int(docs), int(chunks)

    # -- chunks, search rows and vectors -----------------------------------------------------

    def _ensure_vectors(self, c: apsw.Connection, col: Collection, size: int) -> None:
        (dims,) = one(c, "SELECT dimensions FROM collections WHERE id = ?", (col.id,))
        if dims is None:
            # sqlite-vec holds each vector's signs (48 bytes for 384 dimensions), scanned for
            # candidates; the float vectors are in the chunk rows, read by id to rank them exactly.
            # Signs need whole bytes: a model of other sizes is always compared exactly.
            if size % 8 == 0:
                c.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_vec(col.id)} USING vec0(coarse bit[{size}])")
            c.execute("UPDATE collections SET dimensions = ? WHERE id = ?", (size, col.id))
            col.dimensions = size
        elif dims != size:
            raise BadRequest(f"'{col.model}' gave {size}-dimensional vectors; the collection holds {dims}")

    def _insert_chunks(
        self, c: apsw.Connection, cid: int, doc_id: int, chunks: list[Chunk], vectors: list[list[float]]
    ) -> None:
        for i, chunk in enumerate(chunks):
            blob = vector_blob(vectors[i]) if vectors else None
            c.execute(
                'INSERT INTO chunks(document, text, page, heading, start, "end", tokens, vector) '
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    doc_id,
                    chunk.text,
                    chunk.page,
                    json.dumps(list(chunk.heading)),
                    chunk.start,
                    chunk.end,
                    chunk.tokens,
                    blob,
                ),
            )
            chunk_id = c.last_insert_rowid()
            # The heading path is searchable too: a question often names the section it is about.
            c.execute(f"INSERT INTO {_fts(cid)}(rowid, text) VALUES (?, ?)", (chunk_id, _searchable(chunk)))
            if blob is not None and len(vectors[i]) % 8 == 0:
                c.execute(
                    f"INSERT INTO {_vec(cid)}(rowid, coarse) VALUES (?, vec_quantize_binary(?))",
                    (chunk_id, blob),
                )

    def _delete_chunks(self, c: apsw.Connection, cid: int, doc_id: int) -> None:
        ids = [r[0] for r in many(c, "SELECT id FROM chunks WHERE document = ?", (doc_id,))]
        has_vectors = _has_table(c, _vec(cid))
        # sqlite-vec (0.1.9) zeroes a deleted vector's bytes itself; test_kb_index checks it does.
        for chunk_id in ids:
            c.execute(f"DELETE FROM {_fts(cid)} WHERE rowid = ?", (chunk_id,))
            if has_vectors:
                c.execute(f"DELETE FROM {_vec(cid)} WHERE rowid = ?", (chunk_id,))
        c.execute("DELETE FROM chunks WHERE document = ?", (doc_id,))

    def _clear_vectors(self, c: apsw.Connection, cid: int) -> None:
        """Before the table goes: its chunk blobs are then freed pages, zeroed by secure_delete."""
        if _has_table(c, _vec(cid)):
            c.execute(f"DELETE FROM {_vec(cid)}")

    # -- reading for search ------------------------------------------------------------------

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        """id -> (text, page, heading json, start, end, file, collection name)."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self.db.read() as c:
            rows = many(
                c,
                f'SELECT ch.id, ch.text, ch.page, ch.heading, ch.start, ch."end", d.file, co.name '
                f"FROM chunks ch JOIN documents d ON d.id = ch.document "
                f"JOIN collections co ON co.id = d.collection "
                f"WHERE ch.id IN ({marks})",
                tuple(ids),
            )
        return {int(r[0]): r[1:] for r in rows}

    def frequencies(self, col: Collection, words: Sequence[str]) -> tuple[int, dict[str, int]]:
        """(the collection's chunks, in how many of them each word occurs). A word counts as its
        stem (the index's own tokenizer); one the tokenizer splits, as its rarest part. Counting
        a word reads its whole posting list (about 10 ms for one in every chunk of 100,000), so
        the counts are kept until the collection changes."""
        t = _fts(col.id)
        with self._reading("bm25") as c:
            (generation,) = one(c, "SELECT generation FROM collections WHERE id = ?", (col.id,))
            (total,) = one(
                c, "SELECT coalesce(sum(chunks), 0) FROM documents WHERE collection = ?", (col.id,)
            )
            c.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{t}_terms USING fts5vocab(main, {t}, 'row')")
            tokenize = c.fts5_tokenizer("porter", ["unicode61", "remove_diacritics", "2"])
            found: dict[str, int] = {}
            for word in words:
                stems = tokenize(word.encode(), QUERY, None, include_offsets=False, include_colocated=False)
                found[word] = min((self._frequency(c, col.id, generation, str(s)) for s in stems), default=0)
        return int(total), found

    def _frequency(self, c: apsw.Connection, cid: int, generation: int, stem: str) -> int:
        key = (cid, generation, stem)
        if key not in self._frequencies:
            if len(self._frequencies) >= FREQUENCIES_KEPT:
                self._frequencies.clear()
            row = c.execute(f"SELECT doc FROM temp.{_fts(cid)}_terms WHERE term = ?", (stem,)).fetchone()
            self._frequencies[key] = int(row[0]) if row else 0
        return self._frequencies[key]

    def bm25(self, col: Collection, words: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) of the chunks holding any of these words
        (each quoted: FTS5 syntax in a question is text, not operators), best first."""
        if not words:
            return []
        t = _fts(col.id)
        match = " OR ".join(f'"{w}"' for w in words)
        with self._reading("bm25") as c:
            rows = many(
                c, f"SELECT rowid, bm25({t}) FROM {t} WHERE {t} MATCH ? ORDER BY rank LIMIT ?",
                (match, limit),
            )  # fmt: skip
        return [(int(r), -float(s)) for r, s in rows]

    def knn(
        self, col: Collection, query: Sequence[float], limit: int, candidates: int
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity) nearest first. In a collection of more than `candidates`
        chunks, a scan of the vectors' signs (Hamming distance, held in memory: signs.py) picks
        that many, which are then ranked by their exact cosine; a smaller one is ranked whole."""
        if col.dimensions is None:
            return []
        with self._reading("vectors") as c:
            (total,) = one(
                c, "SELECT coalesce(sum(chunks), 0) FROM documents WHERE collection = ?", (col.id,)
            )
            if total <= candidates or not _has_table(c, _vec(col.id)):
                rows = many(
                    c,
                    "SELECT ch.id, ch.vector FROM chunks ch JOIN documents d ON d.id = ch.document "
                    "WHERE d.collection = ? AND ch.vector IS NOT NULL",
                    (col.id,),
                )
            else:
                (generation,) = one(c, "SELECT generation FROM collections WHERE id = ?", (col.id,))
                dims = col.dimensions
                signs = self._signs.get(col.id, generation, lambda: _signs(c, col.id, generation, dims))
                rows = _vectors(c, signs.nearest(query, candidates))
        return _ranked(query, rows, col.dimensions)[:limit]

    def similarities(self, col: Collection, query: Sequence[float], ids: Sequence[int]) -> dict[int, float]:
        """Cosine similarity of the query to each of these chunks (for hits BM25 found alone)."""
        if col.dimensions is None or not ids:
            return {}
        with self._reading("vectors") as c:
            rows = _vectors(c, list(ids))
        return dict(_ranked(query, rows, col.dimensions))


def _changed(c: apsw.Connection, cid: int) -> None:
    """A write to the collection's chunks: what searches hold of them (signs.py, the word
    counts) is read again. Random, not counted up: a collection made again under a dropped
    one's id must not match what another process still holds of the old one."""
    c.execute("UPDATE collections SET generation = random() WHERE id = ?", (cid,))


def _signs(c: apsw.Connection, cid: int, generation: int, dims: int) -> Signs:
    """The signs sqlite-vec holds for the collection (about 0.2 s for 100,000 chunks)."""
    rows = [(int(i), bytes(b)) for i, b in c.execute(f"SELECT rowid, coarse FROM {_vec(cid)}")]
    return Signs.of(generation, rows, dims // 8)


def _vectors(c: apsw.Connection, ids: list[int]) -> list[tuple[Any, ...]]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return many(c, f"SELECT id, vector FROM chunks WHERE id IN ({marks}) AND vector IS NOT NULL", tuple(ids))


def _ranked(query: Sequence[float], rows: list[tuple[Any, ...]], dims: int) -> list[tuple[int, float]]:
    """(id, cosine similarity), best first; vectors of another size (a model change) are skipped."""
    rows = [r for r in rows if len(r[1]) == 4 * dims]
    if not rows:
        return []
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
    q = np.asarray(query, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * (float(np.linalg.norm(q)) or 1.0)
    scores = matrix @ q / np.where(norms == 0, 1.0, norms)
    order = np.argsort(-scores, kind="stable")
    return [(int(rows[i][0]), float(scores[i])) for i in order]


def _document(r: tuple[Any, ...]) -> DocumentRow:
    doc_id, path, file, digest, mtime_ns, size, pages, without, problems, status, chunks, indexed_at = r
    return DocumentRow(
        doc_id, path, file, digest, mtime_ns, size, pages, json.loads(without), json.loads(problems), status,
        chunks, indexed_at,
    )  # fmt: skip


def _searchable(chunk: Chunk) -> str:
    heading = " ".join(chunk.heading)
    return f"{heading}\n{chunk.text}" if heading else chunk.text


def _has_table(c: apsw.Connection, name: str) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None
