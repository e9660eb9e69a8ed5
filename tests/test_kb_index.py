"""The knowledge index: collections, private file, one transaction per document, deletes that are
really gone from the file (text and vectors)."""

from __future__ import annotations

import stat
import struct
from pathlib import Path

import pytest
from kb_helpers import FAKE_MODEL, consistent, make_kb, write
from small_disk import fill, small_disk

from cove.errors import BadRequest, DiskFull
from cove.knowledge.documents import Chunk
from cove.knowledge.embedder import HashEmbedder
from cove.knowledge.errors import CollectionExists, CollectionNotFound
from cove.knowledge.index import Indexed

SECRET = "zanzibarquokka"
__all__ = ["small_disk"]  # the fixture, imported for its use here


def test_collections_are_created_listed_and_dropped(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "home")
    kb.create("notes", FAKE_MODEL)
    with pytest.raises(CollectionExists):
        kb.create("notes", FAKE_MODEL)
    assert [c.name for c in kb.list()] == ["notes"]
    assert kb.info("notes").model == FAKE_MODEL
    kb.drop("notes")
    assert kb.list() == []
    with pytest.raises(CollectionNotFound):
        kb.info("notes")


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", ".hidden", "x" * 65, "C:\\x", "nul\x00", "a\u202eb", "end."]
)
def test_unsafe_collection_names_are_refused(tmp_path: Path, name: str) -> None:
    kb = make_kb(tmp_path / "home")
    with pytest.raises(BadRequest, match="invalid collection name"):
        kb.create(name, FAKE_MODEL)


def test_the_index_file_is_private(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "home")
    kb.create("notes", FAKE_MODEL)
    mode = stat.S_IMODE((tmp_path / "home" / "knowledge.db").stat().st_mode)
    assert mode == 0o600


MARKER = struct.pack("64f", *(0.125 + i / 1024 for i in range(64)))


class MarkingEmbedder(HashEmbedder):
    """The secret's vector is one that cannot occur by chance, so its bytes can be looked for."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [
            list(struct.unpack("64f", MARKER)) if SECRET in t else v
            for t, v in zip(texts, super().embed(texts), strict=True)
        ]


def _file_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("knowledge.db*"))


def test_removed_documents_leave_no_text_or_vector_in_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kb = make_kb(home, MarkingEmbedder(FAKE_MODEL))
    kb.create("notes", FAKE_MODEL)
    write(tmp_path / "d", "secret.txt", f"the password is {SECRET} and nothing else")
    write(tmp_path / "d", "other.txt", "an ordinary note about bicycles")
    kb.add("notes", [tmp_path / "d"])
    kb.sync("notes")
    # Pieces, not the whole: a vector may straddle two of SQLite's overflow pages.
    pieces = [MARKER[i : i + 12] for i in range(0, len(MARKER) - 12, 4)]
    kb.index.db.checkpoint()
    assert SECRET.encode() in _file_bytes(home)
    assert any(piece in _file_bytes(home) for piece in pieces)
    assert kb.remove("notes", ["secret.txt"]) == 1
    kb.index.db.checkpoint()
    data = _file_bytes(home)
    assert SECRET.encode() not in data
    assert not any(piece in data for piece in pieces)
    assert consistent(kb, "notes") == 1
    assert [d.file for d in kb.documents("notes")] == ["other.txt"]
    kb.sync("notes")  # excluded now: the folder's next sync does not bring it back
    assert [d.file for d in kb.documents("notes")] == ["other.txt"]


def test_a_dropped_collection_leaves_no_text_in_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kb = make_kb(home)
    kb.create("notes", FAKE_MODEL)
    write(tmp_path / "d", "secret.txt", f"the password is {SECRET}")
    kb.add("notes", [tmp_path / "d"])
    kb.sync("notes")
    kb.drop("notes")
    assert SECRET.encode() not in _file_bytes(home)


def test_a_failed_write_leaves_the_document_as_it_was(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "home")
    col = kb.index.create("notes", FAKE_MODEL)
    good = Indexed("/x/a.txt", "a.txt", "h1", 1, 1, chunks=[Chunk("one", 0, 3, 1)], vectors=[[1.0] * 8])
    kb.index.write_document(col, good)
    bad = Indexed(
        "/x/a.txt",
        "a.txt",
        "h2",
        2,
        2,
        chunks=[Chunk("two", 0, 3, 1), Chunk("three", 4, 9, 1)],
        vectors=[[0.5] * 8],
    )  # one vector for two chunks: the second insert fails, after the old chunks were deleted
    with pytest.raises(IndexError):
        kb.index.write_document(col, bad)
    [doc] = kb.documents("notes")
    assert (doc.hash, doc.chunks) == ("h1", 1)
    assert consistent(kb, "notes") == 1


def test_a_full_disk_is_one_clear_error_and_loses_nothing(small_disk: Path, tmp_path: Path) -> None:
    kb = make_kb(small_disk / "home")
    kb.create("notes", FAKE_MODEL)
    write(tmp_path / "d", "kept.txt", "indexed before the disk filled up")
    kb.add("notes", [tmp_path / "d"])
    kb.sync("notes")
    write(tmp_path / "d", "big.txt", " ".join(f"word{i}" for i in range(20_000)))
    filler = fill(small_disk)
    with pytest.raises(DiskFull, match=r"disk full: the knowledge index in .* sync again"):
        kb.sync("notes")
    filler.unlink()
    assert [d.file for d in kb.documents("notes")] == ["kept.txt"]
    consistent(kb, "notes")
    assert kb.sync("notes").added == ["big.txt"]  # room again: the next sync does the rest
