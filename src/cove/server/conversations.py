"""cove's conversation fields on the chat routes: which conversation, which door, and what we tell back.

Plain OpenAI and Ollama clients send neither `conversation_id` nor `X-Cove-Conversation` and
stay stateless. A client that sends one sends only its new messages; the conversation service
keeps them, sends the model the stored context (saying in `X-Cove-Context` when older turns
were summarised), and keeps the answer. `conversation_id: "new"` starts a conversation; its id
comes back in the header. `X-Cove-Source` says which door a turn came through (`web`, `cli`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..chat.service import SOURCES, Turn
from ..library.remote import CONTEXT_HEADER, CONVERSATION_HEADER, SOURCE_HEADER


def requested(body_value: str | None, request: Request) -> str | None:
    value = body_value or request.headers.get(CONVERSATION_HEADER)
    return value.strip() if value and value.strip() else None


def source(request: Request) -> str:
    """The door, as the caller names it; "api" for everything else (and for names we do not keep)."""
    named = request.headers.get(SOURCE_HEADER, "").strip().lower()
    return named if named in SOURCES and named != "import" else "api"


def headers(turn: Turn) -> dict[str, Any]:
    out = {CONVERSATION_HEADER: turn.conversation_id} if turn.conversation_id else {}
    if turn.notice:
        out[CONTEXT_HEADER] = str(turn.notice)
    return out
