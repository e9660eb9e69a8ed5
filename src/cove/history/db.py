"""The SQLite file behind the history: one apsw connection, WAL, durable commits, one writer at a time."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from ..errors import DiskFull

# Long enough that two processes writing at once queue behind each other instead of failing.
BUSY_TIMEOUT_MS = 10_000

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: a commit is on disk before add_message returns, even across a power cut.
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    # Deleted rows are overwritten with zeros, not just unlinked: "delete" means gone from the file.
    "PRAGMA secure_delete=ON",
)


def one(conn: apsw.Connection, sql: str, bindings: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The row a query is sure to yield: an aggregate, or a row already known to exist."""
    row = conn.execute(sql, bindings).fetchone()
    if row is None:
        raise LookupError(f"no row from {sql!r}")
    return tuple(row)


def many(conn: apsw.Connection, sql: str, bindings: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sql, bindings)]


def db_path(home: Path) -> Path:
    """Where the history lives inside COVE_HOME."""
    return home / "cove.db"


def connect(path: Path) -> apsw.Connection:
    with disk_full_is_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
    conn = apsw.Connection(str(path))
    # Before the pragmas: switching to WAL may itself wait for another process's lock.
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    try:
        with disk_full_is_reported(path, conn):  # WAL and its index are made here: they need room
            for pragma in PRAGMAS:
                _patiently(conn, pragma)
    except BaseException:
        conn.close()
        raise
    return conn


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException, path: Path, conn: apsw.Connection | None = None) -> DiskFull | None:
    """The one-line DiskFull for SQLite's "database or disk is full", or an I/O error (growing
    the WAL index, say) or OS error whose cause was ENOSPC; None for any other error."""
    if isinstance(exc, apsw.IOError):
        full = conn is not None and conn.system_errno in _FULL_ERRNOS
    else:
        full = isinstance(exc, apsw.FullError) or (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS)
    if not full:
        return None
    return DiskFull(
        f"disk full: the history in {path.parent} could not be saved (what was saved before is "
        "kept); free some space on that disk, or set COVE_HOME to a bigger one, and try again"
    )


@contextmanager
def disk_full_is_reported(path: Path, conn: apsw.Connection | None = None) -> Iterator[None]:
    try:
        yield
    except (apsw.FullError, apsw.IOError, OSError) as exc:
        full = disk_full(exc, path, conn)
        if full is None:
            raise
        raise full from exc


def _patiently(conn: apsw.Connection, pragma: str) -> None:
    """SQLite answers BUSY at once, without waiting, when two processes switch a new file to WAL
    together (it would deadlock otherwise); the loser simply tries again."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute(pragma).fetchall()
            return
        except apsw.BusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only; SQLite gives -wal and -shm the same mode."""
    if path.exists():
        return
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


class Database:
    """An open history file; `write()` and `read()` are transactions, and threads take turns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self._lock = threading.RLock()

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[apsw.Connection]:
        """A transaction that holds the write lock from its first statement, committed on exit.

        IMMEDIATE rather than deferred: a deferred transaction that reads and then writes can
        fail at once with SQLITE_BUSY when another process committed in between, instead of
        waiting for the busy timeout. Not `durable`: committed without waiting for the disk
        (synchronous=NORMAL: safe if cove crashes, lost only on a power cut), for running
        counts rewritten often.
        """
        with self._lock, disk_full_is_reported(self.path, self.conn):
            if not durable:
                self.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                    self.conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (it does for some SQLITE_FULL errors).
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    self.conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A read transaction, so several queries see one consistent snapshot."""
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and empty it, so deleted text does not linger there."""
        with self._lock, disk_full_is_reported(self.path, self.conn):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def reclaim(self) -> None:
        """Rebuild the file without its free pages, then shrink it; for after deleting a lot."""
        with self._lock, disk_full_is_reported(self.path, self.conn):
            self.conn.execute("VACUUM")
        self.checkpoint()

    def close(self) -> None:
        with self._lock:
            self.conn.close()
