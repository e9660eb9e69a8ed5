"""Blobs named by their sha256: verified, resumable writes that only get a final name when correct."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import DigestMismatch, DiskFull
from .atomic import disk_error, fsync_dir
from .names import parse_digest

CHUNK = 1 << 20
#: A partial file no writer holds and untouched this long is garbage, not a resume in waiting.
STALE_PARTIAL_S = 3600.0
PARTIAL_SUFFIX = "-partial"
LOCK_SUFFIX = ".lock"
_FULL = (errno.ENOSPC, errno.EDQUOT)


class PartialBlob:
    """An in-progress blob at `<final>-partial`; it is hashed as it grows and renamed once verified."""

    def __init__(self, final: Path, expected: str | None, resume: bool) -> None:
        self.final = final
        self.expected = expected
        self.path = final.with_name(final.name + PARTIAL_SUFFIX)
        self._hash = hashlib.sha256()
        self.size = 0
        if resume and self.path.exists():
            self._rehash_existing()
        self._file: BinaryIO = open(self.path, "ab" if self.size else "wb")  # noqa: SIM115

    def _rehash_existing(self) -> None:
        with open(self.path, "rb") as handle:
            while block := handle.read(CHUNK):
                self._hash.update(block)
                self.size += len(block)

    def restart(self) -> None:
        """Drop what was written so far (a server that ignored our Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            # Kept, the partial would hold the disk full: give its space back at once.
            self.abandon(keep=False)
            raise DiskFull(
                f"disk full while writing {self.final.name}: the partial file was removed to free "
                "its space; free some more, or set COVE_HOME to a bigger disk, and try again"
            ) from exc
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """fsync, compare the digest, rename into place; a mismatch removes the partial file."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.abandon(keep=False)
            raise disk_error(exc, self.final.name) from exc
        self._file.close()
        digest = self._hash.hexdigest()
        if self.expected and digest != self.expected:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(
                f"sha256 mismatch: expected {self.expected[:12]}…, got {digest[:12]}…; nothing was stored"
            )
        final = self.final.with_name(f"sha256-{digest}")
        os.replace(self.path, final)
        fsync_dir(final.parent)
        return digest

    def abandon(self, keep: bool = True) -> None:
        """Close; keep the bytes for a later resume unless told otherwise, or the disk is full.

        It runs while another error is on its way, so it never raises one of its own.
        """
        if not self._file.closed:
            try:
                self._file.close()  # flushes the last buffered bytes
            except OSError as exc:
                keep = keep and exc.errno not in _FULL
        if not keep:
            self.path.unlink(missing_ok=True)


class Blobs:
    """The `blobs/` folder: `sha256-<hex>` files, written only through PartialBlob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / f"sha256-{parse_digest('sha256:' + digest)}"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _final(self, expected: str | None, key: str) -> Path:
        if expected:
            return self.path(expected)
        return self.root / f"upload-{hashlib.sha256(key.encode()).hexdigest()}"

    def partial(self, expected: str | None, *, resume: bool = True, key: str = "") -> PartialBlob:
        """Start or resume a blob; without an expected digest the partial is keyed by `key`.

        Hold `writing(expected, key)` around it: two writers of one partial file corrupt it.
        """
        return PartialBlob(self._final(expected, key), expected, resume)

    @contextmanager
    def writing(self, expected: str | None, key: str = "", *, wait: bool = True) -> Iterator[None]:
        """Hold the OS lock for one blob's partial file (other threads and processes wait).

        After taking it, check `exists(expected)` again: the holder before may have finished it.
        With `wait=False` a lock held elsewhere raises BlockingIOError at once (for the event
        loop, which must not block, and must not leave a lock taken by a thread it gave up on).
        """
        final = self._final(expected, key)
        with exclusive(final.with_name(final.name + LOCK_SUFFIX), wait=wait):
            yield

    def add_stream(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        """Store bytes from an iterable; returns the hex digest. Existing blobs are not rewritten."""
        if expected and self.exists(expected):
            return expected
        key = os.urandom(8).hex()
        with self.writing(expected, key):
            if expected and self.exists(expected):
                return expected  # another writer stored it while we waited
            blob = self.partial(expected, resume=False, key=key)
            try:
                for chunk in chunks:
                    blob.write(chunk)
            except BaseException:
                blob.abandon(keep=False)
                raise
            return blob.finish()

    def ensure_room(self, needed: int, what: str) -> None:
        """Refuse, before a byte is written, a download the disk cannot hold."""
        free = self.free_bytes()
        if needed > free:
            raise DiskFull(
                f"{what} needs {_mb(needed)} but only {_mb(free)} is free in {self.root.parent}: "
                "free some space, or set COVE_HOME to a bigger disk"
            )

    def add_file(self, source: Path, expected: str | None = None) -> str:
        return self.add_stream(read_chunks(source), expected)

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def all_digests(self) -> set[str]:
        return {p.name[7:] for p in self.root.glob("sha256-*") if len(p.name) == 71}

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def remove_stale(self, older_than_s: float = STALE_PARTIAL_S) -> list[str]:
        """Remove partial files no writer holds that are older than `older_than_s`, and lock
        files left by writers that died; returns the names removed.

        A pull, import or upload holds its blob's lock for as long as it writes the partial, so
        taking the lock without waiting tells a live download from a leftover one.
        """
        removed = []
        for partial in self.root.glob(f"*{PARTIAL_SUFFIX}"):
            final = partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))
            if self._remove_unheld(partial, final.with_name(final.name + LOCK_SUFFIX), older_than_s):
                removed.append(partial.name)
        for lock in self.root.glob(f"*{LOCK_SUFFIX}"):
            with contextlib.suppress(BlockingIOError, FileNotFoundError), exclusive(lock, wait=False):
                pass  # released at once: exclusive() removes the file it held
        return removed

    def _remove_unheld(self, partial: Path, lock: Path, older_than_s: float) -> bool:
        try:
            with exclusive(lock, wait=False):
                if time.time() - partial.stat().st_mtime < older_than_s:
                    return False  # a pull stopped a moment ago may still be resumed
                partial.unlink()
                return True
        except (BlockingIOError, FileNotFoundError):  # being written now, or already gone
            return False


@contextmanager
def exclusive(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An flock on `path`, removed on release. flock (unlike lockf) also excludes threads.

    The holder deletes the file before unlocking, so a waiter checks it locked the file still
    at `path` and not a deleted one; otherwise it opens the new file and waits again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block
