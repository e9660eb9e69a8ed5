"""Conversions between table rows and records, in one place so columns and fields stay in step."""

from __future__ import annotations

import json
from typing import Any

import apsw

from .records import Conversation, Message, NewConversation, NewMessage
from .times import from_text

CONVERSATION_COLUMNS = (
    "id, title, model, persona, system, parameters, num_ctx, created_at, updated_at, source, external_id"
)
MESSAGE_COLUMNS = (
    "id, conversation_id, position, role, content, created_at, prompt_tokens, completion_tokens,"
    " time_to_first_token_ms, tokens_per_s, model, summary_of, in_context, cut_off"
)


def conversation(row: tuple[Any, ...], messages: list[Message]) -> Conversation:
    cid, title, model, persona, system, parameters, num_ctx, created, updated, source, external = row
    return Conversation(
        id=cid,
        title=title,
        model=model,
        persona=persona,
        system=system,
        parameters=json.loads(parameters),
        num_ctx=num_ctx,
        created_at=from_text(created),
        updated_at=from_text(updated),
        source=source,
        external_id=external,
        messages=messages,
    )


def message(row: tuple[Any, ...]) -> Message:
    mid, cid, position, role, content, created, p_tok, c_tok, ttft, tps, model, summary_of, in_ctx, cut = row
    return Message(
        id=mid,
        conversation_id=cid,
        position=position,
        role=role,
        content=content,
        created_at=from_text(created),
        prompt_tokens=p_tok,
        completion_tokens=c_tok,
        ttft_ms=ttft,
        tokens_per_s=tps,
        model=model,
        summary_of=parse_range(summary_of),
        in_context=bool(in_ctx),
        cut_off=cut,
    )


def format_range(span: tuple[int, int] | None) -> str | None:
    return None if span is None else f"{span[0]}-{span[1]}"


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    first, last = text.split("-")
    return int(first), int(last)


def insert_conversation(conn: apsw.Connection, cid: str, new: NewConversation) -> None:
    conn.execute(
        f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cid,
            new.title,
            new.model,
            new.persona,
            new.system,
            json.dumps(new.parameters),
            new.num_ctx,
            new.created_at,
            new.updated_at,
            new.source,
            new.external_id,
        ),
    )
    if new.collections:
        keep_collections(conn, cid, new.collections, new.strict)
    for item in new.messages:
        stored = insert_message(conn, cid, item)
        if item.citations:
            conn.execute(
                "INSERT INTO citations (message_id, items) VALUES (?, ?)",
                (stored.id, json.dumps(list(item.citations), ensure_ascii=False, allow_nan=False)),
            )


def keep_collections(conn: apsw.Connection, cid: str, names: list[str], strict: bool) -> None:
    """The conversation answers from these collections from now on; none: from no documents."""
    names = list(dict.fromkeys(names))
    if not names:
        conn.execute("DELETE FROM conversation_collections WHERE conversation_id = ?", (cid,))
        return
    conn.execute(
        "INSERT INTO conversation_collections (conversation_id, names, strict) VALUES (?, ?, ?)"
        " ON CONFLICT (conversation_id) DO UPDATE SET names = excluded.names, strict = excluded.strict",
        (cid, json.dumps(names, ensure_ascii=False), int(strict)),
    )


def insert_message(conn: apsw.Connection, cid: str, new: NewMessage) -> Message:
    conn.execute(
        f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            cid,
            new.position,
            new.role,
            new.content,
            new.created_at,
            new.prompt_tokens,
            new.completion_tokens,
            new.ttft_ms,
            new.tokens_per_s,
            new.model,
            format_range(new.summary_of),
            int(new.in_context),
            new.cut_off,
        ),
    )
    return Message(
        id=conn.last_insert_rowid(),
        conversation_id=cid,
        position=new.position,
        role=new.role,
        content=new.content,
        created_at=from_text(new.created_at),
        prompt_tokens=new.prompt_tokens,
        completion_tokens=new.completion_tokens,
        ttft_ms=new.ttft_ms,
        tokens_per_s=new.tokens_per_s,
        model=new.model,
        summary_of=new.summary_of,
        in_context=new.in_context,
        cut_off=new.cut_off,
    )
