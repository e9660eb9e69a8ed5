"""A full disk on a real small tmpfs: history writes answer 507 (API) or one line (CLI), and keep
everything committed before; the kept-open connection carries on."""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from cli_helpers import run_main
from fakes import FakeEngine
from server_fixtures import LiveServer, make_app, tiny_cove
from small_disk import fill, small_disk

from cove.cli import main as main_module
from cove.errors import DiskFull
from cove.history import History, db_path
from cove.history.db import disk_full
from cove.library.local import Cove

__all__ = ["small_disk"]

HEADER = "x-cove-conversation"


@pytest.fixture
def full_home(small_disk: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cove]:
    """COVE_HOME on the small disk, with `tiny` stored and one conversation already in it."""
    home = small_disk / "cove-home"
    monkeypatch.setenv("COVE_HOME", str(home))
    cove = tiny_cove(home, engine)
    try:
        yield cove
    finally:
        cove.close()


class Connection:
    """One kept-open HTTP/1.1 connection: every request goes over the same socket."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=30)
        self.http.connect()
        self.socket = self.http.sock

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.http.request(method, path, body=data, headers=headers)
        response = self.http.getresponse()
        payload = json.loads(response.read() or b"null")
        assert self.http.sock is self.socket, "the server closed the kept-open connection"
        return response.status, payload, {k.lower(): v for k, v in response.getheaders()}

    def close(self) -> None:
        self.http.close()


def chat(text: str, cid: str) -> dict[str, Any]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": text}],
        "stream": False,
        "conversation_id": cid,
    }


def test_a_chat_turn_on_a_full_disk_answers_507(full_home: Cove, small_disk: Path) -> None:
    with LiveServer(make_app(full_home)) as url:
        conn = Connection(url)
        try:
            status, body, headers = conn.request("POST", "/api/chat", chat("first", "new"))
            assert status == 200, body
            cid = headers[HEADER]
            filler = fill(small_disk)
            status, body, headers = conn.request("POST", "/api/chat", chat("second", cid))
            assert status == 507, body
            assert "disk full" in body["error"] and "\n" not in body["error"]
            assert str(small_disk) not in body["error"]  # the home folder is scrubbed from answers
            assert headers.get("connection", "").lower() != "close"
            oai = {**chat("third", cid), "stream": False}
            status, body, _ = conn.request("POST", "/v1/chat/completions", oai)
            assert status == 507 and "disk full" in body["error"]["message"], body
            status, body, _ = conn.request("POST", "/api/chat", chat("a new one", "new"))
            assert status == 507, body
            # Everything committed before the disk filled is still there, and nothing half-written.
            status, body, _ = conn.request("GET", f"/api/cove/conversations/{cid}")
            assert status == 200, body
            assert [(m["role"], m["content"]) for m in body["messages"]] == [
                ("user", "first"),
                ("assistant", "You said: first"),
            ]
            filler.unlink()  # with room again, the same conversation carries on
            status, body, _ = conn.request("POST", "/api/chat", chat("second", cid))
            assert status == 200, body
        finally:
            conn.close()
    with History(db_path(full_home.settings.home)) as history:
        stored = [m.content for m in history.get(cid).messages]
    assert stored == ["first", "You said: first", "second", "You said: second"]


def test_cove_run_on_a_full_disk_says_so_in_one_line(
    full_home: Cove,
    small_disk: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(main_module, "Cove", lambda settings: Cove(settings, factory=engine))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # nothing piped in
    code, out, err = run_main(monkeypatch, capsys, "--local", "run", "tiny", "kept")
    assert code == 0 and out == "You said: kept\n", err
    filler = fill(small_disk)
    code, out, err = run_main(monkeypatch, capsys, "--local", "run", "tiny", "lost")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: disk full"), err
    filler.unlink()  # opening the history needs a little room for its WAL index
    with History(db_path(full_home.settings.home)) as history:
        (only,) = [history.get(cid) for cid in history.ids()]
    assert [m.content for m in only.messages] == ["kept", "You said: kept"]


def test_history_on_a_full_disk_raises_disk_full_and_keeps_what_was_committed(small_disk: Path) -> None:
    with History(small_disk / "cove.db") as history:
        chat = history.start("tiny")
        history.add_message(chat.id, "user", "kept")
        fill(small_disk)
        with pytest.raises(DiskFull) as caught:
            for _ in range(1000):  # the WAL may have a free page or two left
                history.add_message(chat.id, "user", "x" * 4000)
        assert "disk full" in str(caught.value)
        assert DiskFull.status == 507
        contents = [m.content for m in history.get(chat.id).messages]
    assert contents[0] == "kept" and all(c == "x" * 4000 for c in contents[1:])


def test_opening_a_history_on_a_full_disk_is_disk_full(small_disk: Path) -> None:
    fill(small_disk)
    with pytest.raises(DiskFull):
        History(small_disk / "cove.db")


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (apsw.FullError("database or disk is full"), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (apsw.BusyError("database is locked"), False),
    ],
)
def test_what_counts_as_disk_full(exc: BaseException, full: bool) -> None:
    assert (disk_full(exc, Path("/x/cove.db")) is not None) is full


def test_an_upload_that_fills_the_disk_answers_507_and_leaves_no_partial(
    full_home: Cove, small_disk: Path
) -> None:
    data = os.urandom(600_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs = full_home.store.blobs
    before = sorted(p.name for p in blobs.root.iterdir())
    fill(small_disk, leave=100_000)
    with LiveServer(make_app(full_home)) as url:
        conn = Connection(url)
        try:
            conn.http.request("POST", f"/api/blobs/{digest}", body=data)
            response = conn.http.getresponse()
            body = json.loads(response.read())
            assert response.status == 507 and "disk full" in body["error"], body
        finally:
            conn.close()
    assert sorted(p.name for p in blobs.root.iterdir()) == before  # no partial holds the space


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), apsw.FullError("database or disk is full")]
)
def test_a_full_disk_anywhere_answers_507_on_a_kept_connection(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """A write cove did not map itself (a copy, say) still answers 507, never a 500."""

    def no_room(*_: Any) -> None:
        raise error

    monkeypatch.setattr(fake_cove, "copy", no_room)
    with LiveServer(make_app(fake_cove)) as url:
        conn = Connection(url)
        try:
            status, body, _ = conn.request("POST", "/api/copy", {"source": "tiny", "destination": "t2"})
            assert status == 507 and body["error"].startswith("disk full"), body
            status, body, _ = conn.request("GET", "/api/tags")  # the same connection carries on
            assert status == 200
        finally:
            conn.close()
