"""Exporting conversations (cove JSON or Markdown) and importing them back, or from a ChatGPT export.

The JSON format, version 1::

    {
      "format": "cove.history",           always this string
      "version": 1,                       bumped only when a reader of version 1 would misread
      "exported_at": "2026-11-01T09:30:00.000000+00:00",
      "conversations": [
        {
          "id": "3f9a0c1b2d4e",           cove's id; kept on import when it is free
          "title": "Monads" | null,
          "model": "gemma3:270m",         the model the conversation was last set to
          "persona": "tutor" | null,      the persona it was started with (a label)
          "system": "..." | null,         the system prompt in force
          "parameters": {...},            sampling options, e.g. {"temperature": 0.7}
          "num_ctx": 8192 | null,
          "created_at": ISO-8601 with offset,
          "updated_at": ISO-8601 with offset,
          "source": "cli" | "api" | "web" | "import:chatgpt" | ...,
          "external_id": "chatgpt:..." | "cove:..." | null,   what makes re-imports skip
          "collections": ["..."],         document collections its turns answer from (may be absent)
          "strict": false,                true: answers come from those documents only
          "messages": [
            {
              "position": 0,              order in the conversation, unique within it
              "role": "system" | "user" | "assistant" | "tool",
              "content": "...",
              "created_at": ISO-8601 with offset,
              "prompt_tokens": int | null, "completion_tokens": int | null,
              "time_to_first_token_ms": number | null, "tokens_per_s": number | null,
              "model": "..." | null,      the model that wrote this answer
              "summary_of": [first, last] | null,  positions a summary message stands for
              "in_context": true,         false: replaced by a summary, not sent to the model
              "cut_off": "..." | null,    why an answer stopped before its end; null: whole
              "citations": [{"n", "file", "page", "heading", "text", "score", ...}]
                                          only on an answer that cited a collection's passages
            }
          ]
        }
      ]
    }

Readers must ignore fields they do not know. Importing skips a conversation whose id, or
external id ("cove:<id>" when it had none), is already in the history, so importing the
same file twice adds nothing the second time.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from ..store.atomic import atomic_write_bytes
from . import chatgpt, chosen, fields
from . import citations as kept_citations
from .errors import InvalidImport
from .jsonfile import read_json
from .records import ROLES, Conversation, ImportResult, Message, NewConversation, NewMessage
from .store import History
from .times import now, to_text

FORMAT = "cove.history"
VERSION = 1
MAX_IMPORT_BYTES = 200 * 1024 * 1024  # checked before reading, so a huge file is never loaded


def export_json(history: History, ids: list[str] | None = None) -> dict[str, Any]:
    """The given conversations (ids or unique prefixes), or all of them, as a version-1 document."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now(),
        "conversations": [
            {
                **conversation_json(history.get(cid), kept_citations.by_position(history, cid)),
                **asdict(chosen.of(history, cid)),
            }
            for cid in _ids(history, ids)
        ],
    }


def export_markdown(history: History, ids: list[str] | None = None) -> str:
    """The given conversations, or all of them, as one Markdown document for reading."""
    return "\n\n---\n\n".join(_conversation_markdown(history.get(cid)) for cid in _ids(history, ids)) + "\n"


def write_export(
    history: History, path: Path, *, kind: Literal["json", "markdown"] = "json", ids: list[str] | None = None
) -> None:
    """Write an export atomically: the file is complete or not there."""
    if kind == "json":
        text = json.dumps(export_json(history, ids), ensure_ascii=False, indent=2) + "\n"
    else:
        text = export_markdown(history, ids)
    atomic_write_bytes(path, text.encode("utf-8"))


def import_file(history: History, path: Path) -> ImportResult:
    """Import a cove JSON export or a ChatGPT conversations.json, all or nothing."""
    data = read_json(Path(path), MAX_IMPORT_BYTES)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        conversations = parse_cove(data)
    elif chatgpt.looks_like_chatgpt(data):
        conversations = chatgpt.parse(data)
    else:
        raise InvalidImport(
            f"{Path(path).name} is neither a cove history export nor a ChatGPT conversations.json"
        )
    # Everything is parsed and checked before the first write, and written in one transaction.
    return history.import_conversations(conversations)


def _ids(history: History, ids: list[str] | None) -> list[str]:
    return history.ids() if ids is None else ids


def conversation_json(
    chat: Conversation, cited: dict[int, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """One conversation as the export writes it; `cited` holds its answers' citations by position."""
    cited = cited or {}
    return {
        "id": chat.id,
        "title": chat.title,
        "model": chat.model,
        "persona": chat.persona,
        "system": chat.system,
        "parameters": chat.parameters,
        "num_ctx": chat.num_ctx,
        "created_at": to_text(chat.created_at),
        "updated_at": to_text(chat.updated_at),
        "source": chat.source,
        "external_id": chat.external_id,
        "messages": [_message_json(m, cited.get(m.position)) for m in chat.messages],
    }


def _message_json(message: Message, citations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "position": message.position,
        "role": message.role,
        "content": message.content,
        "created_at": to_text(message.created_at),
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "time_to_first_token_ms": message.ttft_ms,
        "tokens_per_s": message.tokens_per_s,
        "model": message.model,
        "summary_of": list(message.summary_of) if message.summary_of else None,
        "in_context": message.in_context,
        "cut_off": message.cut_off,
    }
    if citations:
        out["citations"] = citations
    return out


def _conversation_markdown(chat: Conversation) -> str:
    about = [f"model {chat.model}", f"started {chat.created_at:%Y-%m-%d %H:%M} UTC", f"id `{chat.id}`"]
    if chat.persona:
        about.insert(1, f"persona {chat.persona}")
    lines = [f"# {chat.title or 'Untitled conversation'}", "", "*" + " · ".join(about) + "*"]
    if chat.system:
        lines += ["", "**System prompt**", "", chat.system]
    for message in chat.messages:
        lines += ["", f"## {_heading(message)}", "", message.content]
        if message.cut_off:
            lines += ["", f"*(cut off: {message.cut_off})*"]
    return "\n".join(lines)


def _heading(message: Message) -> str:
    if message.summary_of:
        return f"Summary of messages {message.summary_of[0]}–{message.summary_of[1]}"
    heading = message.role.capitalize()
    return f"{heading} ({message.model})" if message.model else heading


# -- reading the cove format ---------------------------------------------------------------------


def parse_cove(data: dict[str, Any]) -> list[NewConversation]:
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidImport("a cove history export needs a version number")
    if version > VERSION:
        raise InvalidImport(f"this export is version {version}; this cove reads up to version {VERSION}")
    raw = fields.items(data, "conversations", "export")
    return [
        _cove_conversation(fields.obj(item, f"conversations[{i}]"), f"conversations[{i}]")
        for i, item in enumerate(raw)
    ]


def _cove_conversation(raw: dict[str, Any], where: str) -> NewConversation:
    cid = fields.text(raw, "id", where)
    parameters = raw.get("parameters") or {}
    messages = [
        _cove_message(fields.obj(item, f"{where}.messages[{i}]"), f"{where}.messages[{i}]")
        for i, item in enumerate(fields.items(raw, "messages", where))
    ]
    if len({m.position for m in messages}) != len(messages):
        raise InvalidImport(f"{where} has two messages at the same position")
    return NewConversation(
        id=cid,
        model=fields.text(raw, "model", where),
        created_at=fields.iso_time(raw, "created_at", where),
        updated_at=fields.iso_time(raw, "updated_at", where),
        title=fields.text(raw, "title", where, optional=True),
        persona=fields.text(raw, "persona", where, optional=True),
        system=fields.text(raw, "system", where, optional=True),
        parameters=fields.obj(parameters, f"{where}.parameters"),
        num_ctx=fields.whole(raw, "num_ctx", where, optional=True),
        source=fields.text(raw, "source", where, optional=True) or "import:cove",
        external_id=fields.text(raw, "external_id", where, optional=True) or f"cove:{cid}",
        messages=messages,
        collections=_collections(raw.get("collections"), f"{where}.collections"),
        strict=raw.get("strict") is True,
    )


def _collections(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise InvalidImport(f"{where} must be a list of collection names")
    return list(value)


def _cove_message(raw: dict[str, Any], where: str) -> NewMessage:
    role = fields.text(raw, "role", where)
    if role not in ROLES:
        raise InvalidImport(f"{where}.role must be one of {', '.join(ROLES)}")
    return NewMessage(
        position=fields.whole(raw, "position", where),
        role=role,
        content=fields.text(raw, "content", where),
        created_at=fields.iso_time(raw, "created_at", where),
        prompt_tokens=fields.whole(raw, "prompt_tokens", where, optional=True),
        completion_tokens=fields.whole(raw, "completion_tokens", where, optional=True),
        ttft_ms=fields.number(raw, "time_to_first_token_ms", where, optional=True),
        tokens_per_s=fields.number(raw, "tokens_per_s", where, optional=True),
        model=fields.text(raw, "model", where, optional=True),
        summary_of=_span(raw.get("summary_of"), f"{where}.summary_of"),
        in_context=fields.flag(raw, "in_context", where, default=True),
        cut_off=fields.text(raw, "cut_off", where, optional=True),
        citations=_citations(raw.get("citations"), f"{where}.citations"),
    )


def _citations(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidImport(f"{where} must be a list of sources")
    return tuple(fields.obj(item, f"{where}[{i}]") for i, item in enumerate(value))


def _span(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InvalidImport(f"{where} must be [first, last] positions or null")
    return value[0], value[1]
