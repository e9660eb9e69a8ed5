"""The schema as append-only named steps, each applied once, in its own transaction.

Never edit or reorder a step that has shipped: add `m00N_...` at the end of STEPS instead.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from .db import Database
from .times import now


def m001_conversations(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            title TEXT,
            model TEXT NOT NULL,
            persona TEXT,
            system TEXT,
            parameters TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(parameters)),
            num_ctx INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'cli',
            external_id TEXT UNIQUE
        );
        CREATE INDEX conversations_by_update ON conversations (updated_at);
        -- AUTOINCREMENT: a message id is never handed out twice, even after deletions.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            time_to_first_token_ms REAL,
            tokens_per_s REAL,
            model TEXT,
            summary_of TEXT,
            in_context INTEGER NOT NULL DEFAULT 1,
            UNIQUE (conversation_id, position)
        );
        CREATE INDEX messages_by_time ON messages (created_at);
        """
    )


def m002_fts(conn: apsw.Connection) -> None:
    # External content: the text is stored once, in messages; triggers keep the index in step.
    # FTS5's own secure-delete makes a delete remove the terms from the index, rather than
    # leaving them in old segments behind a tombstone until the next merge.
    conn.execute(
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            content, content='messages', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
                VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
        """
    )


def m003_personas(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE personas (
            name TEXT PRIMARY KEY,
            system TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        """
    )


def m004_egress(conn: apsw.Connection) -> None:
    # The privacy ledger: one row per outbound attempt, allowed or refused. Never prompt text:
    # only where it went, for what, how many bytes, and why it was let through or not.
    conn.execute(
        """
        CREATE TABLE egress (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            feature TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER,
            address TEXT,
            loopback INTEGER NOT NULL DEFAULT 0,
            decision TEXT NOT NULL CHECK (decision IN ('allowed', 'refused')),
            reason TEXT NOT NULL,
            bytes_sent INTEGER NOT NULL DEFAULT 0,
            bytes_received INTEGER NOT NULL DEFAULT 0,
            ended_at TEXT
        );
        CREATE INDEX egress_by_time ON egress (at);
        """
    )


def m005_measurements(conn: apsw.Connection) -> None:
    """What loads and answers measured on this machine, so `cove fit` predicts from them."""
    conn.execute(
        """
        CREATE TABLE measurements (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            model TEXT NOT NULL,
            digest TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('load', 'answer')),
            num_ctx INTEGER,
            parallel INTEGER,
            kv_type TEXT,
            threads INTEGER,
            peak_bytes INTEGER,
            predicted_bytes INTEGER,
            decode_tps REAL,
            predicted_decode_tps REAL,
            prompt_tps REAL,
            tokens INTEGER,
            load_average REAL
        );
        CREATE INDEX measurements_by_digest ON measurements (digest, kind, at);
        """
    )


def m006_branches(conn: apsw.Connection) -> None:
    """Messages form a tree (an edit or a second answer starts a branch); a conversation shows the
    branch that ends at its leaf. Each insert hangs the new message under the leaf and makes it
    the leaf, so every writer grows the branch shown (see history/branches.py)."""
    conn.execute(
        """
        ALTER TABLE messages ADD COLUMN parent_id INTEGER;
        ALTER TABLE conversations ADD COLUMN leaf_id INTEGER;
        UPDATE messages SET parent_id = (
            SELECT p.id FROM messages p WHERE p.conversation_id = messages.conversation_id
            AND p.position < messages.position ORDER BY p.position DESC LIMIT 1);
        UPDATE conversations SET leaf_id = (
            SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id
            ORDER BY m.position DESC LIMIT 1);
        CREATE INDEX messages_by_parent ON messages (parent_id);
        CREATE TRIGGER messages_tree AFTER INSERT ON messages BEGIN
            UPDATE messages SET parent_id = (
                SELECT nullif(c.leaf_id, 0) FROM conversations c WHERE c.id = new.conversation_id)
            WHERE id = new.id;
            UPDATE conversations SET leaf_id = new.id WHERE id = new.conversation_id;
        END;
        """
    )


def m007_citations(conn: apsw.Connection) -> None:
    """The sources an answer cited (retrieval from the user's documents), kept with the answer.

    A table of its own rather than a column: an answer without sources costs nothing, and the
    row goes with its message (ON DELETE CASCADE), so deleting a conversation deletes them."""
    conn.execute(
        """
        CREATE TABLE citations (
            message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
            items TEXT NOT NULL CHECK (json_valid(items) AND json_type(items) = 'array')
        );
        """
    )


def m008_cut_off(conn: apsw.Connection) -> None:
    """Why an answer stopped before its end (the engine failed, the client left, an upstream
    replica died mid-stream), or NULL for a whole answer: what streamed is kept, never passed
    off as complete."""
    conn.execute("ALTER TABLE messages ADD COLUMN cut_off TEXT")


def m009_conversation_collections(conn: apsw.Connection) -> None:
    """The document collections a conversation answers from, and whether strictly, so a later
    turn (a resumed chat, a reopened page) that names none goes on with them. A row only for a
    conversation that chose some; it goes with its conversation."""
    conn.execute(
        """
        CREATE TABLE conversation_collections (
            conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
            names TEXT NOT NULL CHECK (json_valid(names) AND json_type(names) = 'array'),
            strict INTEGER NOT NULL DEFAULT 0 CHECK (strict IN (0, 1))
        );
        """
    )


def m010_measurement_decode_model(conn: apsw.Connection) -> None:
    """Which formula predicted an answer's decode speed (engine/planner.DECODE_MODEL): the
    measured-over-predicted ratio that scales `cove fit`'s figures is taken only from answers
    the current formula predicted. Older rows have none, so they no longer count."""
    conn.execute("ALTER TABLE measurements ADD COLUMN decode_model INTEGER")


Step = Callable[[apsw.Connection], None]
STEPS: tuple[Step, ...] = (
    m001_conversations,
    m002_fts,
    m003_personas,
    m004_egress,
    m005_measurements,
    m006_branches,
    m007_citations,
    m008_cut_off,
    m009_conversation_collections,
    m010_measurement_decode_model,
)


def applied(db: Database) -> list[str]:
    """The names of the steps this file has had, oldest first."""
    with db.read() as conn:
        return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: Database) -> list[str]:
    """Apply the steps this file lacks and return their names; a second run applies nothing."""
    with db.write() as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
    done = set(applied(db))
    return [step.__name__ for step in STEPS if step.__name__ not in done and _apply(db, step)]


def _apply(db: Database, step: Step) -> bool:
    with db.write() as conn:
        # Checked again under the write lock: another process may have applied it meanwhile.
        if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (step.__name__,)).fetchone():
            return False
        step(conn)
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (step.__name__, now()))
    return True
