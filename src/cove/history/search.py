"""Full-text search over messages: a person's words turned into a safe FTS5 query, ranked by bm25."""

from __future__ import annotations

import re

import apsw

from .records import SearchHit

# "quoted words" become a phrase, anything else a term; stray quotes are dropped.
_PIECES = re.compile(r'"([^"]*)"|([^\s"]+)')
MAX_TERMS = 32
SNIPPET_TOKENS = 16


def fts_query(text: str) -> str | None:
    """The FTS5 query for `text`: every piece double-quoted, so no input is ever FTS syntax.

    Inside double quotes FTS5 reads only a string; `NEAR(`, `*`, `-`, `AND`, `OR` and
    parentheses become ordinary words (or nothing, for punctuation). Pieces with no letter
    or digit are dropped because they tokenize to nothing. Returns None when nothing is left.
    """
    pieces: list[str] = []
    for match in _PIECES.finditer(text.replace("\x00", " ")):
        piece = match.group(1) if match.group(1) is not None else match.group(2)
        if any(ch.isalnum() for ch in piece):
            pieces.append('"' + piece + '"')
    return " ".join(pieces[:MAX_TERMS]) or None


def search(conn: apsw.Connection, text: str, limit: int) -> list[SearchHit]:
    """The best `limit` messages containing every term (and phrase) of `text`."""
    query = fts_query(text)
    if query is None or limit <= 0:
        return []
    rows = conn.execute(
        """
        SELECT m.conversation_id, c.title, m.id, m.position, m.role,
               snippet(messages_fts, 0, '[', ']', '…', ?)
        FROM messages_fts
        JOIN messages m ON m.id = messages_fts.rowid
        JOIN conversations c ON c.id = m.conversation_id
        WHERE messages_fts MATCH ?
        ORDER BY bm25(messages_fts), m.id DESC
        LIMIT ?
        """,
        (SNIPPET_TOKENS, query, limit),
    )
    return [SearchHit(cid, title, mid, pos, role, snippet) for cid, title, mid, pos, role, snippet in rows]
