"""The sources an answer cited, kept beside it (the `citations` table), so a reopened or exported
conversation still shows them: `keep` after the answer is stored, `of` for a whole conversation.

Each message's citations are a JSON array of `{n, file, page, heading, text, score, ...}`
(`cove.chat.retrieval.Citation.to_dict`); the row goes when its message does.
"""

from __future__ import annotations

import json
from typing import Any

from .store import History, _resolve


def keep(history: History, message_id: int, items: list[dict[str, Any]]) -> None:
    """Store (or replace) the citations of one stored message; an empty list stores nothing."""
    if not items:
        return
    text = json.dumps(items, ensure_ascii=False, allow_nan=False)
    with history._db.write() as conn:  # the history's one connection: one writer at a time
        conn.execute(
            "INSERT INTO citations (message_id, items) VALUES (?, ?)"
            " ON CONFLICT (message_id) DO UPDATE SET items = excluded.items",
            (message_id, text),
        )


def of(history: History, conversation_id: str) -> dict[int, list[dict[str, Any]]]:
    """Every cited answer of a conversation: message id → its citations, in their order."""
    return _cited(history, conversation_id, "m.id")


def by_position(history: History, conversation_id: str) -> dict[int, list[dict[str, Any]]]:
    """The same, keyed by the message's position (what an export writes beside each message)."""
    return _cited(history, conversation_id, "m.position")


def _cited(history: History, conversation_id: str, key: str) -> dict[int, list[dict[str, Any]]]:
    with history._db.read() as conn:
        cid = _resolve(conn, conversation_id)
        found = conn.execute(
            f"SELECT {key}, c.items FROM citations c JOIN messages m ON m.id = c.message_id"
            " WHERE m.conversation_id = ? ORDER BY m.position",
            (cid,),
        )
        return {int(k): list(json.loads(items)) for k, items in found}
