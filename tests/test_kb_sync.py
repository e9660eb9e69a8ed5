"""Sync: only what changed is read; renames keep their chunks; deletes go; bad files are reported
and skipped; an interrupted sync (Ctrl-C, kill -9) leaves the index consistent and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kb_helpers import FAKE_MODEL, CountingEmbedder, consistent, make_kb, write

from cove.knowledge import sync as sync_module
from cove.knowledge.embedder import HashEmbedder
from cove.knowledge.service import KnowledgeBase


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    kb = make_kb(tmp_path / "home")
    kb.create("docs", FAKE_MODEL)
    return kb


def test_unchanged_files_are_not_read_again(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "d"
    for i in range(5):
        write(folder, f"n{i}.txt", f"note number {i} about topic {i}")
    kb.add("docs", [folder])
    first = kb.sync("docs")
    assert len(first.added) == 5 and first.chunks == 5
    opened: list[str] = []
    monkeypatch.setattr(sync_module, "file_hash", lambda path: opened.append(path) or "x")
    monkeypatch.setattr(sync_module.parsers, "parse", lambda *a, **k: pytest.fail("parsed an unchanged file"))
    again = kb.sync("docs")
    assert (again.unchanged, again.added, again.updated, opened) == (5, [], [], [])


def test_a_changed_file_is_read_again_and_only_it(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, "a.txt", "apples are red")
    write(folder, "b.txt", "bananas are yellow")
    kb.add("docs", [folder])
    kb.sync("docs")
    path = write(folder, "a.txt", "apricots are orange and soft")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    report = kb.sync("docs")
    assert (report.updated, report.unchanged) == (["a.txt"], 1)
    [hit] = kb.search(["docs"], "apricots orange", k=1, mode="bm25")
    assert hit.file == "a.txt" and "apricots" in hit.text
    assert kb.search(["docs"], "apples", k=5, mode="bm25") == []
    consistent(kb, "docs")


def test_a_touched_file_with_the_same_bytes_is_not_parsed(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "d", "a.txt", "apples are red")
    kb.add("docs", [tmp_path / "d"])
    kb.sync("docs")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    monkeypatch.setattr(
        sync_module.parsers, "parse", lambda *a, **k: pytest.fail("parsed the same bytes again")
    )
    assert kb.sync("docs").updated == []
    assert kb.sync("docs").unchanged == 1  # its new time was recorded: not even hashed now


def test_a_renamed_file_keeps_its_chunks(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, "old.txt", "the quarterly report on walrus migration")
    kb.add("docs", [folder])
    kb.sync("docs")
    [before] = kb.search(["docs"], "walrus", mode="bm25")
    (folder / "sub").mkdir()
    (folder / "old.txt").rename(folder / "sub" / "new.txt")
    report = kb.sync("docs")
    assert report.renamed == [("old.txt", "sub/new.txt")]
    assert (report.added, report.removed) == ([], [])
    [after] = kb.search(["docs"], "walrus", mode="bm25")
    assert after.chunk_id == before.chunk_id and after.file == "sub/new.txt"


def test_a_deleted_file_leaves_the_index(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, "a.txt", "apples are red")
    write(folder, "b.txt", "bananas are yellow")
    kb.add("docs", [folder])
    kb.sync("docs")
    (folder / "a.txt").unlink()
    report = kb.sync("docs")
    assert report.removed == ["a.txt"]
    assert [d.file for d in kb.documents("docs")] == ["b.txt"]
    assert consistent(kb, "docs") == 1


def test_include_and_exclude_globs(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, "keep.md", "# kept\n\nkept text")
    write(folder, "drafts/skip.md", "# skipped\n\nskipped text")
    write(folder, "notes.txt", "a text file")
    kb.add("docs", [folder], include=["*.md"], exclude=["drafts/*"])
    kb.sync("docs")
    assert [d.file for d in kb.documents("docs")] == ["keep.md"]


def test_bad_files_are_reported_and_the_rest_indexed(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "d"
    write(folder, "good.txt", "a perfectly good note")
    write(folder, "locked.txt", "cannot read me")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a symlink loop
    (folder / "dangling.txt").symlink_to(folder / "nowhere.txt")
    kb.add("docs", [folder])
    real_hash = sync_module.file_hash

    def unreadable(path: str) -> str:  # chmod 0 does not stop root, who runs CI here
        if path.endswith("locked.txt"):
            raise PermissionError(13, "Permission denied")
        return real_hash(path)

    monkeypatch.setattr(sync_module, "file_hash", unreadable)
    report = kb.sync("docs")
    assert report.added == ["good.txt"]
    reasons = dict(report.refused)
    assert reasons["locked.txt"] == "cannot be read: Permission denied"
    assert "broken symbolic link" in reasons["dangling.txt"]
    statuses = {d.file: d.status for d in kb.documents("docs")}
    assert statuses == {"good.txt": "indexed", "locked.txt": "refused"}
    assert kb.documents("docs")[1].problems == ["cannot be read: Permission denied"]
    monkeypatch.setattr(sync_module, "file_hash", real_hash)
    assert kb.sync("docs").added == ["locked.txt"]  # readable now: tried again, and indexed


def test_a_refused_document_is_reported_with_its_reason(kb: KnowledgeBase, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "broken.md").write_bytes(b"\x00" * 10 + b"binary")
    write(tmp_path / "d", "fine.md", "# Fine\n\nfine text")
    kb.add("docs", [tmp_path / "d"])
    report = kb.sync("docs")
    assert "fine.md" in report.added
    for file, reason in report.refused:
        assert file == "broken.md" and reason


def test_a_symlink_loop_is_not_followed(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write(folder, "a/note.txt", "one note")
    (folder / "a" / "back").symlink_to(folder, target_is_directory=True)
    kb.add("docs", [folder])
    report = kb.sync("docs")
    assert report.added == ["a/note.txt"]


def test_non_utf8_text_is_indexed(kb: KnowledgeBase, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "latin.txt").write_bytes("café crème brûlée".encode("latin-1"))
    kb.add("docs", [tmp_path / "d"])
    kb.sync("docs")
    [hit] = kb.search(["docs"], "crème", mode="bm25")
    assert "brûlée" in hit.text


def test_a_file_changed_while_read_is_read_again(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "d", "a.txt", "first version")
    kb.add("docs", [tmp_path / "d"])
    real_parse = sync_module.parsers.parse
    calls = []

    def parse_while_editing(p: Path, **kw: object) -> object:
        doc = real_parse(p, **kw)  # type: ignore[arg-type]
        calls.append(p)
        if len(calls) == 1:  # an editor saves while cove reads
            path.write_text("second version, longer than the first")
        return doc

    monkeypatch.setattr(sync_module.parsers, "parse", parse_while_editing)
    report = kb.sync("docs")
    assert len(calls) == 2 and report.added == ["a.txt"]
    [hit] = kb.search(["docs"], "second version", k=1, mode="bm25")
    assert hit.text.startswith("second version")


def test_a_file_that_never_stops_changing_is_reported(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "d", "a.txt", "v")
    kb.add("docs", [tmp_path / "d"])
    real_parse = sync_module.parsers.parse

    def parse_while_growing(p: Path, **kw: object) -> object:
        doc = real_parse(p, **kw)  # type: ignore[arg-type]
        path.write_text(path.read_text() + "v")
        return doc

    monkeypatch.setattr(sync_module.parsers, "parse", parse_while_growing)
    report = kb.sync("docs")
    assert report.added == [] and "changed while being read" in dict(report.refused)["a.txt"]
    assert kb.documents("docs") == []  # nothing half-read was written


def test_ten_thousand_tiny_files(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(10_000):
        sub = folder / f"s{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.txt").write_text(f"tiny file {i}")
    kb.add("docs", [folder])
    seen = []
    report = kb.sync("docs", seen.append)
    assert len(report.added) == 10_000 and report.chunks == 10_000
    assert seen[-1].files_done == seen[-1].files_total == 10_000
    assert any(p.eta_s is not None and p.rate > 0 for p in seen)
    started = time.monotonic()
    assert kb.sync("docs").unchanged == 10_000
    assert time.monotonic() - started < 10  # nothing read again (the benchmark measures it)


def test_ctrl_c_mid_sync_keeps_the_index_consistent_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    for i in range(6):
        write(folder, f"n{i}.txt", f"note {i}")
    kb = make_kb(tmp_path / "home", CountingEmbedder(fail_after=3))
    kb.create("docs", FAKE_MODEL)
    kb.add("docs", [folder])
    with pytest.raises(KeyboardInterrupt):
        kb.sync("docs")
    assert consistent(kb, "docs") == 3
    kb.close()
    resumed = make_kb(tmp_path / "home", CountingEmbedder())
    report = resumed.sync("docs")
    assert (len(report.added), report.unchanged) == (3, 3)  # only the rest redone
    assert consistent(resumed, "docs") == 6


KILLED_SYNC = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from kb_helpers import CountingEmbedder, make_kb

class Slow(CountingEmbedder):
    def embed(self, texts):
        time.sleep(0.05)
        return super().embed(texts)

kb = make_kb(Path({home!r}), Slow())
kb.sync("docs", lambda p: print(p.files_done, flush=True))
"""


def test_kill_9_mid_sync_keeps_the_index_consistent_and_resumes(kb: KnowledgeBase, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    for i in range(200):
        write(folder, f"n{i:03}.txt", f"note {i} " * 50)
    kb.add("docs", [folder])
    kb.close()
    script = KILLED_SYNC.format(tests=str(Path(__file__).parent), home=str(tmp_path / "home"))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    for line in child.stdout:
        if int(line.split()[0]) >= 20:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    again = make_kb(tmp_path / "home")
    done = len(again.documents("docs"))
    assert 20 <= done < 200
    consistent(again, "docs")
    report = again.sync("docs")
    assert report.unchanged == done and len(report.added) == 200 - done
    assert consistent(again, "docs") == 200


def test_changing_the_model_re_embeds_with_a_message(kb: KnowledgeBase, tmp_path: Path) -> None:
    write(tmp_path / "d", "a.txt", "apples are red")
    kb.add("docs", [tmp_path / "d"])
    kb.sync("docs")
    assert kb.info("docs").dimensions == 64
    kb._embedder_of = lambda model: HashEmbedder(model, size=32)
    report = kb.sync("docs", model="hash-bow-small")
    assert report.message and "re-embedding 1 documents" in report.message
    assert report.updated == ["a.txt"]
    info = kb.info("docs")
    assert (info.model, info.dimensions) == ("hash-bow-small", 32)
    consistent(kb, "docs")


def test_a_file_added_by_itself_and_removed_stays_removed(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = write(tmp_path / "d", "lease.md", "# Lease\n\nThe rent is due monthly.")
    kb.add("docs", [path])
    kb.sync("docs")
    assert kb.remove("docs", ["lease.md"]) == 1
    assert kb.sync("docs").added == [] and kb.documents("docs") == []
