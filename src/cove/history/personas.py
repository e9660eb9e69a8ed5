"""Personas: named system prompts a person can start a conversation with."""

from __future__ import annotations

import apsw

from ..errors import BadRequest
from .errors import PersonaNotFound
from .records import Persona
from .times import from_text, now

MAX_NAME = 64


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise BadRequest(f"a persona name is 1 to {MAX_NAME} printable characters, got {name!r}")
    return name


def save(conn: apsw.Connection, name: str, system: str) -> Persona:
    """Add a persona, or change the system prompt of an existing one (keeping its creation time)."""
    name = check_name(name)
    conn.execute(
        "INSERT INTO personas (name, system, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET system = excluded.system",
        (name, system, now()),
    )
    return find(conn, name)


def find(conn: apsw.Connection, name: str) -> Persona:
    row = conn.execute(
        "SELECT name, system, created_at FROM personas WHERE name = ?", (name.strip(),)
    ).fetchone()
    if row is None:
        raise PersonaNotFound(f"no persona named {name!r}")
    return Persona(row[0], row[1], from_text(row[2]))


def every(conn: apsw.Connection) -> list[Persona]:
    rows = conn.execute("SELECT name, system, created_at FROM personas ORDER BY name")
    return [Persona(name, system, from_text(created)) for name, system, created in rows]


def remove(conn: apsw.Connection, name: str) -> None:
    """Forget a persona; conversations started with it keep its name and their copy of its prompt."""
    conn.execute("DELETE FROM personas WHERE name = ?", (name.strip(),))
    if conn.changes() == 0:
        raise PersonaNotFound(f"no persona named {name!r}")
