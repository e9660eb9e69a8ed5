"""Usage figures over a period: conversations, messages, tokens, and each model's speed."""

from __future__ import annotations

from datetime import datetime

import apsw

from .db import many, one
from .records import ModelUsage, Stats
from .times import to_text

_IN_RANGE = "(?1 IS NULL OR {col} >= ?1) AND (?2 IS NULL OR {col} < ?2)"


def stats(conn: apsw.Connection, since: datetime | None, until: datetime | None) -> Stats:
    """Conversations started, and messages written, in [since, until)."""
    bounds = (to_text(since) if since else None, to_text(until) if until else None)
    (conversations,) = one(
        conn, "SELECT count(*) FROM conversations WHERE " + _IN_RANGE.format(col="created_at"), bounds
    )
    messages, tokens_in, tokens_out = one(
        conn,
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)"
        " FROM messages WHERE " + _IN_RANGE.format(col="created_at"),
        bounds,
    )
    return Stats(
        since=since,
        until=until,
        conversations=conversations,
        messages=messages,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        by_model=_by_model(conn, bounds),
    )


def _by_model(conn: apsw.Connection, bounds: tuple[str | None, str | None]) -> dict[str, ModelUsage]:
    # An answer without its own model was written by the conversation's model.
    rows = many(
        conn,
        """
        SELECT coalesce(m.model, c.model) AS name, count(*),
               coalesce(sum(m.prompt_tokens), 0), coalesce(sum(m.completion_tokens), 0),
               avg(m.tokens_per_s), avg(m.time_to_first_token_ms)
        FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.role = 'assistant' AND """
        + _IN_RANGE.format(col="m.created_at")
        + " GROUP BY name ORDER BY name",
        bounds,
    )
    return {name: ModelUsage(name, *figures) for name, *figures in rows}
