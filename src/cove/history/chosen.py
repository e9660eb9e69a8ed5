"""The document collections a conversation answers from (the `conversation_collections` table):
`choose` when a turn names them, `of` when a later turn, `cove run --resume` or the web page
picks the conversation up again. No row: it answers from none."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import rows
from .store import History, _resolve


@dataclass(frozen=True)
class Chosen:
    """The collections (in the order chosen) and whether answers come from them alone."""

    collections: list[str] = field(default_factory=list)
    strict: bool = False


def of(history: History, conversation_id: str) -> Chosen:
    with history._db.read() as conn:
        cid = _resolve(conn, conversation_id)
        row = conn.execute(
            "SELECT names, strict FROM conversation_collections WHERE conversation_id = ?", (cid,)
        ).fetchone()
    if row is None:
        return Chosen()
    names = [str(n) for n in json.loads(row[0]) if isinstance(n, str)]
    return Chosen(names, bool(row[1]) and bool(names))


def choose(history: History, conversation_id: str, chosen: Chosen) -> None:
    """Keep the conversation's collections; none chosen deletes the row (answers from none)."""
    with history._db.write() as conn:  # the history's one connection: one writer at a time
        rows.keep_collections(conn, _resolve(conn, conversation_id), chosen.collections, chosen.strict)
