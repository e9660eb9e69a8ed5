"""A bulky GGUF uploaded to the server is checked off the event loop and refused with a 400."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from gguf_writer import gguf_string, header, u32
from server_fixtures import anyio_backend, client, make_app
from test_server_guard import assert_ollama_error

import cove.library.local as local
from cove.library.local import Cove
from cove.store import gguf
from cove.store.gguf import GGUFInfo

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

OCTETS = {"Content-Type": "application/octet-stream"}


def bulky_gguf() -> bytes:
    """Three times the keys cove checks, each one legal: the old check read them all."""
    count = gguf._MAX_KEYS * 3
    return header(3, 0, count) + b"".join(gguf_string(f"k{i}") + u32(4) + u32(i) for i in range(count))


async def test_bulky_upload_is_refused_by_create(fake_cove: Cove) -> None:
    data = bulky_gguf()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with client(make_app(fake_cove)) as c:
        assert (await c.post(f"/api/blobs/{digest}", content=data, headers=OCTETS)).status_code == 201
        body = {"model": "bulky", "files": {"m.gguf": digest}, "stream": False}
        r = await c.post("/api/create", json=body)
        message = assert_ollama_error(r, 400)
        assert "metadata entries" in message and "65,536" in message
        assert (await c.get("/api/tags")).status_code == 200  # the connection and server carry on
    assert not fake_cove.store.has("bulky")


async def test_create_checks_the_file_off_the_event_loop(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """While the check runs the loop still answers other requests: it holds a worker thread."""
    loop_thread = threading.current_thread()
    started, answered = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    real = local.validate_gguf

    def watched(path: Path) -> GGUFInfo:
        threads.append(threading.current_thread())
        started.set()
        answered.wait(timeout=5)  # on the loop's own thread this would hold every request
        return real(path)

    monkeypatch.setattr(local, "validate_gguf", watched)
    data = (tmp_path / "tiny.gguf").read_bytes()  # the file fake_cove stored as tiny
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with client(make_app(fake_cove)) as c:
        await c.post(f"/api/blobs/{digest}", content=data, headers=OCTETS)
        body: dict[str, Any] = {"model": "checked", "files": {"m.gguf": digest}, "stream": False}
        create = asyncio.create_task(c.post("/api/create", json=body))
        assert await asyncio.to_thread(started.wait, 5)
        tags = await c.get("/api/tags")
        still_checking = not create.done()
        answered.set()
        r = await create
    assert tags.status_code == 200 and still_checking
    assert r.status_code == 200, r.text
    assert threads and threads[0] is not loop_thread
