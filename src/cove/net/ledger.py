"""The privacy ledger: every outbound attempt, allowed or refused, as a row in cove.db's `egress`.

A row holds when, for what feature, to which host and port (and address, once connected), the
decision and its reason, and the bytes each way. Never a prompt, a URL path or a query.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..history.db import Database, db_path, many
from ..history.migrations import migrate
from ..history.times import now, to_text

_COLUMNS = (
    "id, at, feature, host, port, address, loopback, decision, reason, bytes_sent, bytes_received, ended_at"
)


@dataclass(frozen=True)
class Entry:
    """One ledger row as `cove privacy log --json` and /api/cove/privacy show it."""

    id: int
    at: str
    feature: str
    host: str
    port: int | None
    address: str | None
    loopback: bool
    decision: str
    reason: str
    bytes_sent: int
    bytes_received: int
    ended_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """The ledger of one COVE_HOME; the database opens on first use, so reading costs nothing."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._db: Database | None = None
        self._lock = threading.Lock()

    def _open(self) -> Database:
        with self._lock:
            if self._db is None:
                db = Database(db_path(self.home))
                migrate(db)
                self._db = db
            return self._db

    def record(
        self,
        feature: str,
        host: str,
        port: int | None,
        decision: str,
        reason: str,
        *,
        loopback: bool = False,
        address: str | None = None,
    ) -> int:
        """Add one attempt and return its row id (to add the bytes to when it ends)."""
        with self._open().write() as conn:
            conn.execute(
                "INSERT INTO egress (at, feature, host, port, address, loopback, decision, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), feature, host, port, address, int(loopback), decision, reason),
            )
            return int(conn.last_insert_rowid())

    def finish(
        self, row: int, sent: int, received: int, address: str | None = None, *, ended: bool = True
    ) -> None:
        """Write the bytes an allowed attempt has moved (and, when `ended`, that it is over).

        A running count (not `ended`: a long-lived client writes one after every response) does
        not wait for the disk: an fsync there cost each answer of a remote engine milliseconds.
        """
        with self._open().write(durable=ended) as conn:
            conn.execute(
                "UPDATE egress SET bytes_sent = ?, bytes_received = ?, "
                "ended_at = CASE WHEN ? THEN ? ELSE ended_at END, "
                "address = coalesce(?, address) WHERE id = ?",
                (sent, received, int(ended), now(), address, row),
            )

    def entries(self, days: float | None = None, limit: int | None = None) -> list[Entry]:
        """The newest attempts first, those of the last `days` days when given."""
        if not db_path(self.home).exists():
            return []  # never create a database just to say it is empty
        where, bindings = "", ()  # type: tuple[str, tuple[str, ...]]
        if days is not None:
            since = to_text(datetime.now(UTC) - timedelta(days=days))
            where, bindings = "WHERE at >= ?", (since,)
        tail = f" LIMIT {int(limit)}" if limit else ""
        with self._open().read() as conn:
            rows = many(conn, f"SELECT {_COLUMNS} FROM egress {where} ORDER BY id DESC{tail}", bindings)
        return [_entry(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _entry(row: tuple[Any, ...]) -> Entry:
    values = list(row)
    values[6] = bool(values[6])
    return Entry(*values)
