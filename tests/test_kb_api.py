"""/api/cove/kb: collections, uploads under safe names, sync progress, documents, search, errors;
and the watcher that `cove serve` starts to keep watched folders in sync."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from kb_helpers import FAKE_MODEL, make_kb, write
from server_fixtures import LiveServer, client, make_app, wait_for

from cove.knowledge.watch import Watcher
from cove.library.local import Cove

pytestmark = pytest.mark.anyio


async def _collection(http: httpx.AsyncClient, name: str = "docs") -> None:
    created = await http.post("/api/cove/kb", json={"name": name, "model": FAKE_MODEL})
    assert created.status_code == 201, created.text


async def test_collections_are_created_listed_and_dropped(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as http:
        await _collection(http)
        again = await http.post("/api/cove/kb", json={"name": "docs"})
        assert again.status_code == 409 and "already exists" in again.json()["error"]
        listed = (await http.get("/api/cove/kb")).json()["collections"]
        assert [(c["name"], c["model"], c["documents"]) for c in listed] == [("docs", FAKE_MODEL, 0)]
        bad = await http.post("/api/cove/kb", json={"name": "../etc"})
        assert bad.status_code == 400 and "invalid collection name" in bad.json()["error"]
        assert (await http.delete("/api/cove/kb/docs")).json() == {"dropped": "docs"}
        missing = await http.get("/api/cove/kb/docs")
        assert missing.status_code == 404 and "no collection named 'docs'" in missing.json()["error"]


HOSTILE = ["../../x.txt", "C:\\Windows\\evil.txt", "nul.txt", "a\u202etxt.exe.txt", "\x00zero.txt", "...txt"]


async def test_uploads_are_stored_under_safe_names_inside_the_collection(fake_cove: Cove) -> None:
    home = fake_cove.settings.home
    async with client(make_app(fake_cove)) as http:
        await _collection(http)
        files = [
            ("file", (name, f"upload {i} about hostile names".encode(), "text/plain"))
            for i, name in enumerate(HOSTILE)
        ]
        stored = await http.post("/api/cove/kb/docs/upload", files=files)
        assert stored.status_code == 201, stored.text
        names = stored.json()["files"]
        folder = (home / "knowledge" / "docs").resolve()
        for name in names:
            path = (folder / name).resolve()
            assert path.parent == folder and path.is_file()
            assert not any(ch in name for ch in "/\\:\x00\u202e") and not name.startswith(".")
        assert "_nul.txt" in names and "x.txt" in names and "evil.txt" in names
        report = await _sync(http)
        assert len(report["added"]) == len(set(names))
        docs = (await http.get("/api/cove/kb/docs/documents")).json()["documents"]
        assert sorted(d["file"] for d in docs) == sorted(set(names))


async def test_an_upload_over_the_size_cap_is_refused(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove, max_body=10_000)) as http:
        await _collection(http)
        big = await http.post(
            "/api/cove/kb/docs/upload", files=[("file", ("big.txt", b"x" * 20_000, "text/plain"))]
        )
        assert big.status_code == 413
        assert not (fake_cove.settings.home / "knowledge" / "docs" / "big.txt").exists()
        for name in ("..", "tool.exe", "noext"):
            refused = await http.post(
                "/api/cove/kb/docs/upload", files=[("file", (name, b"x", "text/plain"))]
            )
            assert refused.status_code == 422 and "cannot be indexed" in refused.json()["error"]
        empty = await http.post("/api/cove/kb/docs/upload", data={"note": "no file"})
        assert empty.status_code == 400 and "no file" in empty.json()["error"]


async def _sync(http: httpx.AsyncClient, name: str = "docs") -> dict[str, object]:
    response = await http.post(f"/api/cove/kb/{name}/sync", json={})
    assert response.status_code == 200, response.text
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert all("progress" in line for line in lines[:-1])
    report: dict[str, object] = lines[-1]["report"]
    return report


async def test_folders_sync_list_search_and_delete(fake_cove: Cove, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    write(folder, "refunds.md", "# Refunds\n\nA refund is paid within thirty days.")
    write(folder, "fruit.txt", "Bananas are yellow.")
    async with client(make_app(fake_cove)) as http:
        await _collection(http)
        added = await http.post("/api/cove/kb/docs/paths", json={"paths": [str(folder)]})
        assert added.json()["roots"][0]["path"] == str(folder.resolve())
        response = await http.post("/api/cove/kb/docs/sync", json={})
        lines = [json.loads(line) for line in response.text.splitlines()]
        progress = [line["progress"] for line in lines if "progress" in line]
        assert progress[-1]["files_done"] == progress[-1]["files_total"] == 2
        assert {"pages", "chunks", "rate", "eta_s"} <= set(progress[-1])
        assert sorted(lines[-1]["report"]["added"]) == ["fruit.txt", "refunds.md"]
        found = await http.post(
            "/api/cove/kb/search", json={"collections": ["docs"], "query": "refund paid", "k": 2}
        )
        [best, _] = found.json()["passages"]
        assert (best["file"], best["heading"]) == ("refunds.md", "Refunds") and "relevant" in best
        removed = await http.request("DELETE", "/api/cove/kb/docs/documents", json={"paths": ["refunds.md"]})
        assert removed.json() == {"removed": 1}
        docs = (await http.get("/api/cove/kb/docs/documents")).json()["documents"]
        assert [d["file"] for d in docs] == ["fruit.txt"]
        every = await http.request("DELETE", "/api/cove/kb/docs/documents", json={"all": True})
        assert every.json() == {"removed": 1}
        unknown = await http.post(
            "/api/cove/kb/search", json={"collections": ["docs"], "query": "x", "mode": "magic"}
        )
        assert unknown.status_code == 400 and "mode" in unknown.json()["error"]
        missing = await http.post("/api/cove/kb/nope/sync", json={})
        assert missing.status_code == 404


def test_the_watcher_syncs_a_changed_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kb = make_kb(home)
    kb.create("docs", FAKE_MODEL)
    folder = tmp_path / "watched"
    write(folder, "first.txt", "the first note")
    kb.add("docs", [folder])
    watcher = Watcher(lambda: kb, home, rescan_s=600, debounce_ms=50, poll=True)
    watcher.start()
    try:
        wait_for(lambda: [d.file for d in kb.documents("docs")] == ["first.txt"], what="the first sync")
        write(folder, "second.txt", "a second note, written while the server runs")
        wait_for(lambda: len(kb.documents("docs")) == 2, what="the watcher to index the new file")
        (folder / "first.txt").unlink()
        wait_for(lambda: [d.file for d in kb.documents("docs")] == ["second.txt"], what="the deletion")
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 8  # stopping the server is not held up


def test_the_server_starts_and_stops_the_watcher(fake_cove: Cove, tmp_path: Path) -> None:
    kb = fake_cove.knowledge
    kb.create("docs", FAKE_MODEL)
    folder = tmp_path / "watched"
    write(folder, "note.txt", "a note the server indexes by itself")
    kb.add("docs", [folder])
    with LiveServer(make_app(fake_cove)):  # uvicorn runs the app's lifespan, and so the watcher
        wait_for(lambda: len(kb.documents("docs")) == 1, what="the server's watcher to sync")
