"""Blobs named by their sha256: verified, resumable writes that only get a final name when correct."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from ..errors import DigestMismatch
from .atomic import disk_error, fsync_dir
from .names import parse_digest

CHUNK = 1 << 20


class PartialBlob:
    """An in-progress blob at `<final>-partial`; it is hashed as it grows and renamed once verified."""

    def __init__(self, final: Path, expected: str | None, resume: bool) -> None:
        self.final = final
        self.expected = expected
        self.path = final.with_name(final.name + "-partial")
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
            raise disk_error(exc, self.final.name) from exc
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
        """Close; keep the bytes for a later resume unless told otherwise."""
        if not self._file.closed:
            self._file.close()
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

    def partial(self, expected: str | None, *, resume: bool = True, key: str = "") -> PartialBlob:
        """Start or resume a blob; without an expected digest the partial is keyed by `key`."""
        if expected:
            final = self.path(expected)
        else:
            safe = hashlib.sha256(key.encode()).hexdigest()
            final = self.root / f"upload-{safe}"
        return PartialBlob(final, expected, resume)

    def add_stream(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        """Store bytes from an iterable; returns the hex digest. Existing blobs are not rewritten."""
        if expected and self.exists(expected):
            return expected
        blob = self.partial(expected, resume=False, key=os.urandom(8).hex())
        try:
            for chunk in chunks:
                blob.write(chunk)
        except BaseException:
            blob.abandon(keep=False)
            raise
        return blob.finish()

    def add_file(self, source: Path, expected: str | None = None) -> str:
        return self.add_stream(read_chunks(source), expected)

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def all_digests(self) -> set[str]:
        return {p.name[7:] for p in self.root.glob("sha256-*") if len(p.name) == 71}

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


def read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block
