"""Search's bounded work: the vectors' signs held in memory (packed as sqlite-vec packs them, and
read again after every write, here or by another process), and BM25 over the rarest words."""

from __future__ import annotations

from pathlib import Path

import apsw
import numpy as np
import pytest
import sqlite_vec
from kb_helpers import FAKE_MODEL, make_kb, write

from cove.knowledge import search as search_module
from cove.knowledge.index import KnowledgeIndex, vector_blob
from cove.knowledge.search import pruned
from cove.knowledge.service import KnowledgeBase
from cove.knowledge.signs import Signs, SignsCache, sign_bits


def test_signs_are_packed_as_sqlite_vec_packs_them() -> None:
    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    for seed in range(5):
        vector = np.random.default_rng(seed).normal(size=64).astype(np.float32)
        (theirs,) = conn.execute("SELECT vec_quantize_binary(?)", (vector_blob(vector.tolist()),)).fetchone()
        assert sign_bits(vector) == bytes(theirs)


@pytest.mark.parametrize("dims", [64, 24])  # whole uint64 words, and bytes only
def test_nearest_signs_are_those_that_differ_least(dims: int) -> None:
    rng = np.random.default_rng(3)
    query = rng.normal(size=dims)
    vectors = [query * np.where(np.arange(dims) < flips, -1, 1) for flips in (5, 0, 9, 2, 30)]
    signs = Signs.of(7, [(100 + i, sign_bits(v)) for i, v in enumerate(vectors)], dims // 8)
    assert sorted(signs.nearest(query, 2)) == [101, 103]  # 0 and 2 signs flipped
    assert sorted(signs.nearest(query, 3)) == [100, 101, 103]
    assert sorted(signs.nearest(query, 9)) == [100, 101, 102, 103, 104]  # more asked than held


def test_signs_of_another_size_are_left_out() -> None:
    signs = Signs.of(1, [(1, b"\x00" * 8), (2, b"\x00" * 4)], 8)
    assert signs.ids.tolist() == [1]


def test_the_cache_loads_again_only_for_another_generation() -> None:
    cache, loads = SignsCache(), []

    def load(generation: int) -> Signs:
        loads.append(generation)
        return Signs.of(generation, [(1, b"\x01")], 1)

    cache.get(5, 10, lambda: load(10))
    cache.get(5, 10, lambda: load(10))
    assert loads == [10]
    assert cache.get(5, 11, lambda: load(11)).generation == 11
    cache.forget(5)
    cache.get(5, 11, lambda: load(11))
    assert loads == [10, 11, 11]


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KnowledgeBase:
    """43 chunks, searched through the signs (candidates fewer than the chunks)."""
    monkeypatch.setattr(search_module, "CANDIDATES", 12)
    monkeypatch.setattr(search_module, "CANDIDATES_PER_RESULT", 0)
    kb = make_kb(tmp_path / "home")
    kb.create("docs", FAKE_MODEL)
    for i in range(43):
        write(tmp_path / "d", f"n{i}.txt", f"note {i} about topic{i} and subject{i % 7}")
    kb.add("docs", [tmp_path / "d"])
    kb.sync("docs")
    return kb


def test_a_synced_file_is_found_through_the_signs_at_once(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.search(["docs"], "note 3 about topic3", mode="vector")  # the signs are now held
    write(tmp_path / "d", "walrus.txt", "walrus tusks ivory walrus arctic")
    kb.sync("docs")
    [hit, *_] = kb.search(["docs"], "walrus tusks ivory walrus arctic", k=3, mode="vector")
    assert hit.file == "walrus.txt" and hit.score == pytest.approx(1.0)
    (tmp_path / "d" / "walrus.txt").unlink()
    kb.sync("docs")
    found = kb.search(["docs"], "walrus tusks ivory walrus arctic", k=3, mode="vector")
    assert "walrus.txt" not in [p.file for p in found]


def test_another_process_writing_the_index_is_seen(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.search(["docs"], "note 3 about topic3", mode="vector")
    other = make_kb(tmp_path / "home")  # the same knowledge.db, opened again (as `cove kb sync` does)
    write(tmp_path / "d", "seal.txt", "harbour seal pups haul out")
    other.sync("docs")
    other.close()
    [hit, *_] = kb.search(["docs"], "harbour seal pups haul out", k=3, mode="vector")
    assert hit.file == "seal.txt"


def test_a_collection_made_again_is_not_answered_from_the_old_one(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.search(["docs"], "note 3 about topic3", mode="vector")
    kb.drop("docs")
    kb.create("docs", FAKE_MODEL)
    for i in range(20):
        write(tmp_path / "e", f"m{i}.txt", f"memo {i} on theme{i}")
    kb.add("docs", [tmp_path / "e"])
    kb.sync("docs")
    [hit, *_] = kb.search(["docs"], "memo 4 on theme4", k=3, mode="vector")
    assert hit.file == "m4.txt"


def test_every_write_gives_the_collection_a_new_generation(kb: KnowledgeBase, tmp_path: Path) -> None:
    def generation() -> int:
        with kb.index.db.read() as c:
            return int(c.execute("SELECT generation FROM collections WHERE name = 'docs'").fetchone()[0])

    seen = [generation()]
    write(tmp_path / "d", "n1.txt", "changed text")
    kb.sync("docs")
    seen.append(generation())
    kb.remove("docs", ["n2.txt"])
    seen.append(generation())
    assert len(set(seen)) == 3


def test_word_counts_follow_stems_and_writes(kb: KnowledgeBase, tmp_path: Path) -> None:
    col = kb.index.collection("docs")
    total, counts = kb.index.frequencies(col, ["notes", "subject3", "absent"])
    assert total == 43 and counts == {"notes": 43, "subject3": 6, "absent": 0}  # "notes" as "note"
    write(tmp_path / "d", "extra.txt", "absent no more")
    kb.sync("docs")
    assert kb.index.frequencies(col, ["absent"]) == (44, {"absent": 1})


def test_bm25_ranks_by_the_rarest_words_within_the_bound() -> None:
    counts = {"install": 900, "kernel": 40, "debian": 9000, "wifi": 3, "nowhere": 0}
    assert pruned(counts, 10_000, budget=1000) == ["wifi", "kernel", "install"]
    assert pruned(counts, 10_000, budget=100) == ["wifi", "kernel"]
    assert pruned(counts, 10_000, budget=1) == ["wifi"]  # the rarest, whatever the bound
    assert pruned({"debian": 9000, "package": 8000}, 10_000, budget=1) == ["package"]  # all common
    assert pruned({"nowhere": 0}, 10_000) == []


def test_a_word_in_half_the_chunks_or_more_is_left_out(kb: KnowledgeBase) -> None:
    assert pruned({"note": 43, "subject3": 6}, 43) == ["subject3"]
    hits = kb.search(["docs"], "note subject3", k=10, mode="bm25")
    assert len(hits) == 6 and all(h.text.endswith("subject3") for h in hits)


def test_a_bound_search_still_finds_the_rare_word(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "POSTINGS", 5)
    [hit, *_] = kb.search(["docs"], "about subject2 topic30", k=3, mode="bm25")
    assert hit.file == "n30.txt"


def test_an_index_made_before_generations_opens(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.db"
    conn = apsw.Connection(str(path))
    conn.execute(
        "CREATE TABLE collections (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, model TEXT NOT NULL, "
        "dimensions INTEGER, created TEXT NOT NULL, last_sync TEXT)"
    )
    conn.execute("INSERT INTO collections(name, model, created) VALUES ('old', 'm', 'then')")
    conn.close()
    index = KnowledgeIndex(path)
    assert index.collection("old").name == "old"
    with index.db.read() as c:
        assert c.execute("SELECT generation FROM collections").fetchone() == (0,)
    index.close()
