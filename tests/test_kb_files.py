"""GET /api/cove/kb/{name}/documents/{id}/file and /api/cove/kb/{name}/file?file=NAME: a document's
original file, only for documents of that collection (a deleted one is a 404, a path from the
request is never opened), with a type that cannot run script in cove's origin, through the
guard the other /api/cove routes have."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from kb_files import docx_file, pdf_bytes
from kb_helpers import FAKE_MODEL, write
from server_fixtures import client, make_app

from cove.library.local import Cove
from cove.server.kb_files import headers_for

pytestmark = pytest.mark.anyio
HOSTILE = '<img src=x onerror=alert(1)> "q".md'
EVIL_HTML = "<html><body><script>window.pwned = 1</script><p>Seals rest on the pier.</p></body></html>"


async def _indexed(http: httpx.AsyncClient, folder: Path, name: str = "docs") -> dict[str, dict[str, Any]]:
    assert (await http.post("/api/cove/kb", json={"name": name, "model": FAKE_MODEL})).status_code == 201
    assert (await http.post(f"/api/cove/kb/{name}/paths", json={"paths": [str(folder)]})).status_code == 200
    synced = await http.post(f"/api/cove/kb/{name}/sync", json={"stream": False})
    assert synced.status_code == 200, synced.text
    docs = (await http.get(f"/api/cove/kb/{name}/documents")).json()["documents"]
    return {d["file"]: d for d in docs}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    write(folder, "seals.txt", "Seals rest on the north pier.")
    write(folder, "page.html", EVIL_HTML)
    write(folder, f"sub/{HOSTILE}", "# Tides\n\nSpring tides reach the pier.")
    (folder / "harbour.pdf").write_bytes(pdf_bytes(["Page one.", "Seals on page two."]))
    docx_file(folder / "letter.docx")
    return folder


async def test_a_document_s_file_is_served_by_id_and_by_its_cited_name(
    fake_cove: Cove, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    async with client(make_app(fake_cove)) as http:
        docs = await _indexed(http, folder)
        assert all(isinstance(d["id"], int) and d["id"] > 0 for d in docs.values())
        pdf = await http.get(f"/api/cove/kb/docs/documents/{docs['harbour.pdf']['id']}/file")
        assert pdf.status_code == 200 and pdf.content == (folder / "harbour.pdf").read_bytes()
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"].startswith("inline;")
        assert pdf.headers["x-content-type-options"] == "nosniff"
        text = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"})
        assert text.text == "Seals rest on the north pier."
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        assert text.headers["content-security-policy"] == "sandbox; default-src 'none'"
        head = await http.head("/api/cove/kb/docs/file", params={"file": "seals.txt"})
        assert head.status_code == 200 and head.headers["content-length"] == str(len(text.content))
        office = await http.get("/api/cove/kb/docs/file", params={"file": "letter.docx"})
        assert office.headers["content-disposition"].startswith("attachment;")
        assert office.content == (folder / "letter.docx").read_bytes()


async def test_html_is_served_as_text_that_runs_nothing(fake_cove: Cove, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    async with client(make_app(fake_cove)) as http:
        await _indexed(http, folder)
        page = await http.get("/api/cove/kb/docs/file", params={"file": "page.html"})
        assert page.text == EVIL_HTML
        assert page.headers["content-type"] == "text/plain; charset=utf-8"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in page.headers["content-security-policy"]
        hostile = await http.get("/api/cove/kb/docs/file", params={"file": f"sub/{HOSTILE}"})
        assert hostile.status_code == 200, hostile.text
        disposition = hostile.headers["content-disposition"]
        # The quoted name is plain ASCII with no quote, markup or line break; the real one is %-encoded.
        assert 'filename="_img src_x onerror_alert_1__ _q_.md";' in disposition
        assert "filename*=UTF-8''%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%20%22q%22.md" in disposition
        assert hostile.text.startswith("# Tides") and "\n" not in disposition


@pytest.mark.parametrize(
    "file", ["../../etc/passwd", "/etc/passwd", "seals.txt/../../../etc/passwd", "notes/seals.txt", ""]
)
async def test_only_a_document_of_the_collection_is_served(
    fake_cove: Cove, tmp_path: Path, file: str
) -> None:
    folder = _folder(tmp_path)
    async with client(make_app(fake_cove)) as http:
        await _indexed(http, folder)
        refused = await http.get("/api/cove/kb/docs/file", params={"file": file})
        assert refused.status_code == (400 if not file else 404), refused.text
        assert "root:" not in refused.text


async def test_a_deleted_document_a_missing_collection_and_another_s_id_are_404(
    fake_cove: Cove, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    other = tmp_path / "other"
    write(other, "secret.txt", "Another collection's secret.")
    async with client(make_app(fake_cove)) as http:
        docs = await _indexed(http, folder)
        theirs = await _indexed(http, other, "private")
        wrong = await http.get(f"/api/cove/kb/docs/documents/{theirs['secret.txt']['id']}/file")
        assert wrong.status_code == 404 and "Another" not in wrong.text
        removed = await http.request("DELETE", "/api/cove/kb/docs/documents", json={"paths": ["seals.txt"]})
        assert removed.json() == {"removed": 1}
        gone = await http.get(f"/api/cove/kb/docs/documents/{docs['seals.txt']['id']}/file")
        assert gone.status_code == 404 and gone.headers["x-cove-error"] == "DocumentNotFound"
        by_name = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"})
        assert by_name.status_code == 404
        missing = await http.get("/api/cove/kb/nope/file", params={"file": "seals.txt"})
        assert missing.status_code == 404 and missing.headers["x-cove-error"] == "CollectionNotFound"


async def test_a_file_swapped_for_a_link_after_indexing_is_not_followed(
    fake_cove: Cove, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    secret = write(tmp_path / "elsewhere", "secret.txt", "not a document of the collection")
    async with client(make_app(fake_cove)) as http:
        await _indexed(http, folder)
        os.remove(folder / "seals.txt")
        os.symlink(secret, folder / "seals.txt")
        linked = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"})
        assert linked.status_code == 404 and "not a document" not in linked.text
        os.remove(folder / "seals.txt")
        os.mkfifo(folder / "seals.txt")  # a reader would wait forever on a FIFO
        fifo = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"})
        assert fifo.status_code == 404 and "kb sync docs" in fifo.json()["error"]


async def test_two_documents_with_one_name_are_told_apart_by_id(fake_cove: Cove, tmp_path: Path) -> None:
    one, two = write(tmp_path / "a", "same.txt", "first"), write(tmp_path / "b", "same.txt", "second")
    async with client(make_app(fake_cove)) as http:
        await http.post("/api/cove/kb", json={"name": "docs", "model": FAKE_MODEL})
        await http.post("/api/cove/kb/docs/paths", json={"paths": [str(one.parent), str(two.parent)]})
        await http.post("/api/cove/kb/docs/sync", json={"stream": False})
        docs = (await http.get("/api/cove/kb/docs/documents")).json()["documents"]
        ambiguous = await http.get("/api/cove/kb/docs/file", params={"file": "same.txt"})
        assert ambiguous.status_code == 409 and "Knowledge page" in ambiguous.json()["error"]
        bodies = {(await http.get(f"/api/cove/kb/docs/documents/{d['id']}/file")).text for d in docs}
        assert bodies == {"first", "second"}


async def test_the_file_route_is_behind_the_api_key_and_refuses_other_sites(
    fake_cove: Cove, tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    async with client(make_app(fake_cove, api_keys=("k3y",))) as http:
        http.headers["authorization"] = "Bearer k3y"
        await _indexed(http, folder)
        del http.headers["authorization"]
        assert (await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"})).status_code == 401
        keyed = {"authorization": "Bearer k3y"}
        ok = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"}, headers=keyed)
        assert ok.status_code == 200
        foreign = {**keyed, "sec-fetch-site": "cross-site"}
        linked = await http.get("/api/cove/kb/docs/file", params={"file": "seals.txt"}, headers=foreign)
        assert linked.status_code == 403


def test_no_indexed_type_is_served_as_something_a_browser_runs() -> None:
    from cove.knowledge.parsers import SUFFIXES

    for suffix in sorted(SUFFIXES | {".svg", ".xml", ".js"}):
        headers = headers_for(f"x{suffix}")
        kind = headers["content-type"].split(";")[0]
        assert kind in {"text/plain", "application/pdf"} or headers["content-disposition"].startswith(
            "attachment"
        ), (suffix, kind)
        assert headers["x-content-type-options"] == "nosniff"
    assert json.dumps(headers_for("x.pdf"))  # plain strings only
