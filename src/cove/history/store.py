"""`History`: start, add to, read, search, summarise and really delete conversations on this machine."""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import apsw

from ..errors import BadRequest
from . import branches, context, personas, rows, usage
from .branches import Tree
from .db import Database, many, one
from .errors import AmbiguousConversation, ConversationNotFound
from .migrations import migrate
from .records import (
    ROLES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    NewConversation,
    NewMessage,
    Persona,
    SearchHit,
    Stats,
)
from .search import search
from .times import from_text, now

MIN_PREFIX = 4  # like git: a short id works once it is long enough to mean something
ID_LENGTH = 12
PREVIEW_CHARS = 80
#: The messages of conversation `c`'s shown branch: from its leaf up through the parents.
SHOWN = """shown(id, parent) AS (
    SELECT id, parent_id FROM messages WHERE id = nullif(c.leaf_id, 0)
    UNION ALL SELECT m.id, m.parent_id FROM messages m JOIN shown ON m.id = shown.parent)"""


class _Keep(Enum):
    KEEP = "keep"


#: `update_settings` default: leave this setting as it is (None would clear it).
KEEP: Literal[_Keep.KEEP] = _Keep.KEEP


def new_id() -> str:
    return uuid.uuid4().hex[:ID_LENGTH]


class History:
    """Every conversation kept on this machine, in one SQLite file that several processes may share.

    A write on a full disk raises DiskFull (a 507 on the server) and leaves every committed turn.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = Database(self.path)
        migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- conversations ------------------------------------------------------------------------

    def start(
        self,
        model: str,
        *,
        title: str | None = None,
        persona: str | None = None,
        system: str | None = None,
        parameters: dict[str, Any] | None = None,
        num_ctx: int | None = None,
        source: str = "cli",
    ) -> Conversation:
        """A new, empty conversation; a persona's prompt is copied in unless `system` is given."""
        stamp = now()
        checked = _check_parameters(parameters)
        with self._db.write() as conn:
            if persona is not None:
                chosen = personas.find(conn, persona)
                persona = chosen.name
                if system is None:
                    system = chosen.system
            new = NewConversation(
                model=model,
                created_at=stamp,
                updated_at=stamp,
                title=_clean_title(title),
                persona=persona,
                system=system,
                parameters=checked,
                num_ctx=num_ctx,
                source=source,
            )
            cid = new_id()
            rows.insert_conversation(conn, cid, new)
        return self.get(cid)

    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        ttft_ms: float | None = None,
        tokens_per_s: float | None = None,
        model: str | None = None,
        cut_off: str | None = None,
    ) -> Message:
        """Append a message, committed to disk before this returns; `cut_off` says why an answer
        stopped before its end."""
        if role not in ROLES:
            raise BadRequest(f"a message role is one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise BadRequest("a message's content must be text")
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            new = NewMessage(
                position=context.next_position(conn, cid),
                role=role,
                content=content,
                created_at=now(),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                ttft_ms=ttft_ms,
                tokens_per_s=tokens_per_s,
                model=model,
                cut_off=cut_off,
            )
            message = rows.insert_message(conn, cid, new)
            _touch(conn, cid, new.created_at)
        return message

    def get(self, conversation_id: str) -> Conversation:
        """A conversation with all its messages; `conversation_id` may be a unique prefix."""
        with self._db.read() as conn:
            return _load(conn, _resolve(conn, conversation_id))

    def list(self, limit: int = 50, offset: int = 0) -> builtins.list[ConversationSummary]:
        """Conversations, most recently active first, each counted and previewed as shown (the
        branch ending at its leaf: answers regenerated or edited away are not counted)."""
        with self._db.read() as conn:
            found = many(
                conn,
                f"""
                SELECT c.id, c.title, c.model, c.persona, c.source, c.created_at, c.updated_at,
                       (WITH RECURSIVE {SHOWN} SELECT count(*) FROM shown),
                       (WITH RECURSIVE {SHOWN}
                        SELECT substr(m.content, 1, {PREVIEW_CHARS}) FROM messages m JOIN shown USING (id)
                        WHERE m.role = 'user' ORDER BY m.position LIMIT 1)
                FROM conversations c
                ORDER BY c.updated_at DESC, c.rowid DESC
                LIMIT ? OFFSET ?
                """,
                (max(0, limit), max(0, offset)),
            )
        return [_summary(row) for row in found]

    def ids(self) -> builtins.list[str]:
        """Every conversation id, oldest first (for exporting everything)."""
        with self._db.read() as conn:
            return [row[0] for row in conn.execute("SELECT id FROM conversations ORDER BY created_at, rowid")]

    def search(self, text: str, limit: int = 20) -> builtins.list[SearchHit]:
        """Messages containing every word of `text`, best match first; any text is safe to pass."""
        with self._db.read() as conn:
            return search(conn, text, limit)

    def rename(self, conversation_id: str, title: str | None) -> None:
        """Retitle a conversation; None or a blank title makes it untitled again."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (_clean_title(title), cid))

    def update_settings(
        self,
        conversation_id: str,
        *,
        model: str | _Keep = KEEP,
        system: str | _Keep | None = KEEP,
        parameters: dict[str, Any] | _Keep | None = KEEP,
        num_ctx: int | _Keep | None = KEEP,
    ) -> Conversation:
        """Change how the next answers are made; settings left at KEEP stay, None clears one."""
        changes: dict[str, Any] = {}
        if model is not KEEP:
            changes["model"] = model
        if system is not KEEP:
            changes["system"] = system
        if parameters is not KEEP:
            changes["parameters"] = json.dumps(_check_parameters(parameters))
        if num_ctx is not KEEP:
            changes["num_ctx"] = num_ctx
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            # Column names come from the fixed keys above, never from the caller.
            assignments = ", ".join(f"{column} = ?" for column in changes)
            if assignments:
                conn.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*changes.values(), cid))
                _touch(conn, cid, now())
            return _load(conn, cid)

    def remove(self, conversation_id: str) -> None:
        """Delete a conversation, its messages and their search index entries, from disk too."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            conn.execute("DELETE FROM conversations WHERE id = ?", (cid,))  # messages cascade
        self._db.checkpoint()

    def remove_all(self) -> int:
        """Delete every conversation and shrink the file; returns how many there were. Personas stay."""
        with self._db.write() as conn:
            (count,) = one(conn, "SELECT count(*) FROM conversations")
            conn.execute("DELETE FROM conversations")
            # Belt and braces: the triggers emptied the index row by row; this drops its segments.
            conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('delete-all')")
        self._db.reclaim()
        return int(count)

    # -- branches: edits and second answers ---------------------------------------------------

    def tree(self, conversation_id: str) -> Tree:
        """Every message's parent and the leaf of the branch `get()` shows."""
        with self._db.read() as conn:
            return branches.load(conn, _resolve(conn, conversation_id))

    def branch_before(self, conversation_id: str, message_id: int) -> Conversation:
        """Show the branch up to the message's parent: the next message added becomes its sibling
        (an edited question, or another answer), and the branch it was on is kept."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            branches.branch_before(conn, cid, message_id)
            _touch(conn, cid, now())
            return _load(conn, cid)

    def select_branch(self, conversation_id: str, message_id: int) -> Conversation:
        """Show the branch through this message (to its newest end)."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            branches.select(conn, cid, message_id)
            return _load(conn, cid)

    def remove_message(self, conversation_id: str, message_id: int) -> Conversation:
        """Delete one message, from disk too; whatever answered it now follows its parent."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            branches.remove(conn, cid, message_id)
            _touch(conn, cid, now())
            chat = _load(conn, cid)
        self._db.checkpoint()
        return chat

    def replace_message(self, conversation_id: str, message_id: int, content: str) -> Conversation:
        """Change one message's text in place, on every branch that holds it."""
        if not isinstance(content, str):
            raise BadRequest("a message's content must be text")
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            branches.replace(conn, cid, message_id, content)
            _touch(conn, cid, now())
            return _load(conn, cid)

    # -- context and summaries ------------------------------------------------------------------

    def replace_with_summary(self, conversation_id: str, upto_position: int, summary_text: str) -> Message:
        """Stand `summary_text` in for the messages up to `upto_position`; they stay readable in get()."""
        with self._db.write() as conn:
            cid = _resolve(conn, conversation_id)
            summary = context.summarise(conn, cid, upto_position, summary_text)
            _touch(conn, cid, now())
        return summary

    def context_messages(self, conversation_id: str) -> builtins.list[dict[str, str]]:
        """The chat messages to send the model next: system and summaries, then recent turns."""
        chat = self.get(conversation_id)
        return context.context_messages(chat.system, chat.messages)

    # -- personas ---------------------------------------------------------------------------

    def add_persona(self, name: str, system: str) -> Persona:
        with self._db.write() as conn:
            return personas.save(conn, name, system)

    def persona(self, name: str) -> Persona:
        with self._db.read() as conn:
            return personas.find(conn, name)

    def personas(self) -> builtins.list[Persona]:
        with self._db.read() as conn:
            return personas.every(conn)

    def remove_persona(self, name: str) -> None:
        with self._db.write() as conn:
            personas.remove(conn, name)

    # -- usage and imports --------------------------------------------------------------------

    def stats(self, since: datetime | None = None, until: datetime | None = None) -> Stats:
        with self._db.read() as conn:
            return usage.stats(conn, since, until)

    def import_conversations(self, conversations: Iterable[NewConversation]) -> ImportResult:
        """Store them all in one transaction, skipping any whose id or external id is already here."""
        imported = skipped = 0
        with self._db.write() as conn:
            for new in conversations:
                if _already_here(conn, new):
                    skipped += 1
                    continue
                rows.insert_conversation(conn, new.id or new_id(), new)
                imported += 1
        return ImportResult(imported, skipped)


def _resolve(conn: apsw.Connection, ref: str) -> str:
    """The full id for `ref`: an exact id, or a prefix of at least MIN_PREFIX characters of just one."""
    if conn.execute("SELECT 1 FROM conversations WHERE id = ?", (ref,)).fetchone():
        return ref
    if len(ref) < MIN_PREFIX:
        raise ConversationNotFound(f"no conversation {ref!r} (an id prefix needs {MIN_PREFIX}+ characters)")
    matches = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM conversations WHERE substr(id, 1, ?) = ? LIMIT 5", (len(ref), ref)
        )
    ]
    if not matches:
        raise ConversationNotFound(f"no conversation with id {ref!r}")
    if len(matches) > 1:
        raise AmbiguousConversation(f"{ref!r} starts several conversation ids ({', '.join(matches)}, ...)")
    return str(matches[0])


def _load(conn: apsw.Connection, cid: str) -> Conversation:
    """The conversation as shown: the messages of the branch that ends at its leaf, by position."""
    row = one(conn, f"SELECT {rows.CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (cid,))
    sql = f"SELECT {rows.MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY position"
    found = [rows.message(item) for item in many(conn, sql, (cid,))]
    shown = set(branches.load(conn, cid).path())
    return rows.conversation(row, [m for m in found if m.id in shown])


def _touch(conn: apsw.Connection, cid: str, stamp: str) -> None:
    conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (stamp, cid))


def _already_here(conn: apsw.Connection, new: NewConversation) -> bool:
    found = conn.execute(
        "SELECT 1 FROM conversations WHERE external_id = ? OR id = ?", (new.external_id, new.id)
    ).fetchone()
    return found is not None


def _summary(row: tuple[Any, ...]) -> ConversationSummary:
    cid, title, model, persona, source, created, updated, count, preview = row
    return ConversationSummary(
        cid, title, model, persona, source, from_text(created), from_text(updated), count, preview
    )


def _clean_title(title: str | None) -> str | None:
    """Titles are one line; a blank one means untitled."""
    if title is None:
        return None
    return " ".join(title.split()) or None


def _check_parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest("conversation parameters must be a JSON object")
    try:
        json.dumps(parameters, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"conversation parameters must be plain JSON values: {exc}") from exc
    return parameters
