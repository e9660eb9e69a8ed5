"""`cove kb` end to end through the real entry point, in-process and through a running server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import run_main
from kb_helpers import FAKE_MODEL, write
from server_fixtures import LiveServer, make_app

from cove.cli import main as main_module
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove


@pytest.fixture(params=["local", "server"])
def way(request: pytest.FixtureRequest, fake_cove: Cove, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "local":
        monkeypatch.setenv("COVE_LOCAL", "1")
        yield "local"
        return

    def no_local_store(settings: object) -> Cove:
        raise AssertionError("the CLI used its own knowledge base, not the server's")

    with LiveServer(make_app(fake_cove)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        monkeypatch.setattr(main_module, "Cove", no_local_store)
        yield "server"


def test_a_collection_from_create_to_drop(
    way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "notes"
    write(folder, "refunds.md", "# Refunds\n\nA refund is paid within thirty days.")
    write(folder, "fruit.txt", "Bananas are yellow.")

    def cove(*args: str) -> tuple[int, str, str]:
        return run_main(monkeypatch, capsys, "kb", *args)

    assert cove("create", "docs", "--model", FAKE_MODEL)[0] == 0
    code, out, _ = cove("add", "docs", str(folder))
    assert code == 0 and "synced 'docs': 2 added" in out
    code, out, _ = cove("ls")
    assert code == 0 and "docs" in out and "hash-bow" in out
    [listed] = json.loads(cove("ls", "--json")[1])
    assert (listed["documents"], listed["roots"][0]["path"]) == (2, str(folder.resolve()))
    code, out, _ = cove("ls", "docs")
    assert "refunds.md" in out and "fruit.txt" in out
    code, out, _ = cove("search", "docs", "when is a refund paid", "--json", "-k", "1")
    [hit] = json.loads(out)
    assert {"file", "page", "heading", "text", "score", "chunk_id"} <= set(hit)
    assert (hit["file"], hit["heading"]) == ("refunds.md", "Refunds")
    code, out, _ = cove("search", "docs", "refund", "--mode", "bm25")
    assert code == 0 and "[1] refunds.md" in out
    assert cove("rm", "docs", "fruit.txt") == (0, "removed 1 document from 'docs'\n", "")
    code, out, _ = cove("sync", "docs")
    assert "0 added" in out and "1 unchanged" in out
    code, _, err = cove("drop", "docs")
    assert code == 1 and "pass --yes" in err
    assert cove("drop", "docs", "--yes")[0] == 0
    code, _, err = cove("search", "docs", "anything")
    assert code == 1 and err.count("\n") == 1 and "no collection named 'docs'" in err


def test_bad_files_and_missing_text_are_named(
    way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "notes"
    write(folder, "good.txt", "fine text")
    (folder / "loop").symlink_to(folder)
    (folder / "gone.txt").symlink_to(folder / "missing.txt")
    run_main(monkeypatch, capsys, "kb", "create", "docs", "--model", FAKE_MODEL)
    code, out, err = run_main(monkeypatch, capsys, "kb", "add", "docs", str(folder))
    assert code == 0 and "1 added" in out
    assert "skipped gone.txt: is a broken symbolic link" in err


def test_ctrl_c_exits_130(
    fake_cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVE_LOCAL", "1")
    write(tmp_path / "notes", "a.txt", "text")
    run_main(monkeypatch, capsys, "kb", "create", "docs", "--model", FAKE_MODEL)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(KnowledgeBase, "sync", interrupted)
    code, _, err = run_main(monkeypatch, capsys, "kb", "add", "docs", str(tmp_path / "notes"))
    assert code == 130 and "aborted" in err


def test_errors_are_one_line(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COVE_LOCAL", "1")
    code, _, err = run_main(monkeypatch, capsys, "kb", "create", "../evil")
    assert code == 1 and err.startswith("Error: invalid collection name") and err.count("\n") == 1
    run_main(monkeypatch, capsys, "kb", "create", "docs", "--model", FAKE_MODEL)
    code, _, err = run_main(monkeypatch, capsys, "kb", "create", "docs")
    assert code == 1 and "already exists" in err
    code, _, err = run_main(monkeypatch, capsys, "kb", "rm", "docs")
    assert code == 1 and "--all" in err
