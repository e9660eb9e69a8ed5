"""What the model is sent of a conversation: its system prompt, summaries of old turns, recent turns."""

from __future__ import annotations

import apsw

from ..errors import BadRequest
from . import rows
from .db import many, one
from .records import Message, NewMessage
from .times import now

SUMMARY_INTRO = "Summary of the earlier conversation:\n"


def summarise(conn: apsw.Connection, cid: str, upto_position: int, text: str) -> Message:
    """Take every in-context message up to `upto_position` out of context and add `text` in their place.

    The old messages stay in the table (the person can still read them); only `in_context`
    changes. An earlier summary in that range is replaced too, and the new one's `summary_of`
    covers what it covered.
    """
    if not text.strip():
        raise BadRequest("a summary needs some text")
    replaced = many(
        conn,
        "SELECT position, summary_of FROM messages"
        " WHERE conversation_id = ? AND in_context = 1 AND position <= ?",
        (cid, upto_position),
    )
    if not replaced:
        raise BadRequest(f"no message at or before position {upto_position} is still in context")
    first = min(_first_position(position, span) for position, span in replaced)
    conn.execute(
        "UPDATE messages SET in_context = 0 WHERE conversation_id = ? AND in_context = 1 AND position <= ?",
        (cid, upto_position),
    )
    summary = NewMessage(
        position=next_position(conn, cid),
        role="system",
        content=text,
        created_at=now(),
        summary_of=(first, upto_position),
    )
    return rows.insert_message(conn, cid, summary)


def _first_position(position: int, span: str | None) -> int:
    covered = rows.parse_range(span)
    return covered[0] if covered else position


def next_position(conn: apsw.Connection, cid: str) -> int:
    (position,) = one(
        conn, "SELECT coalesce(max(position), -1) + 1 FROM messages WHERE conversation_id = ?", (cid,)
    )
    return int(position)


def context_messages(system: str | None, messages: list[Message]) -> list[dict[str, str]]:
    """Chat messages for the engine: one leading system message, then the turns still in context.

    System prompt and summaries share that one message because many chat templates accept a
    system message only in first place.
    """
    live = [m for m in messages if m.in_context]
    summaries = sorted((m for m in live if m.summary_of), key=lambda m: m.summary_of or (0, 0))
    head = ([system] if system else []) + [SUMMARY_INTRO + m.content for m in summaries]
    out = [{"role": "system", "content": "\n\n".join(head)}] if head else []
    return out + [{"role": m.role, "content": m.content} for m in live if not m.summary_of]
