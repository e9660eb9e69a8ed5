"""Requests bound to a stored conversation (`conversation_id` field or `X-Cove-Conversation` header).

Plain OpenAI and Ollama clients send neither and stay stateless. A client that sends one sends
only its new messages; cove appends them to the conversation, sends the model the stored context
(summarising older turns when they no longer fit, and saying so in `X-Cove-Context`), and keeps
the answer. `conversation_id: "new"` starts a conversation; its id comes back in the header.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..chat.context import fit_context, record_answer
from ..engine.events import ChatChunk
from ..errors import BadRequest
from ..history import History
from ..history.records import ROLES
from ..library.local import Cove
from .generation import Call
from .state import state_of

HEADER = "x-cove-conversation"
CONTEXT_HEADER = "x-cove-context"


def requested(body_value: str | None, headers: Any) -> str | None:
    value = body_value or headers.get(HEADER)
    return value.strip() if value and value.strip() else None


def attach(cove: Cove, history: History, call: Call, conversation_id: str) -> None:
    """Store the request's messages and replace them with the conversation's context (blocking)."""
    incoming = [(_role(m), m.get("content")) for m in call.body.get("messages") or []]
    unknown = sorted({role for role, _ in incoming if role not in ROLES})
    if unknown:  # checked before the first write: a refused request stores nothing
        raise BadRequest(f"a stored conversation keeps only {', '.join(ROLES)} messages, not {unknown[0]!r}")
    if conversation_id == "new":
        chat = history.start(call.model, source="api", parameters=call.options or {})
    else:
        chat = history.get(conversation_id)
    for role, content in incoming:
        text = content if isinstance(content, str) else _text_of(content)
        if role == "system":
            history.update_settings(chat.id, system=text)
        else:
            history.add_message(chat.id, role, text)
            if not chat.title and not chat.messages and role == "user" and text.strip():
                history.rename(chat.id, text.strip().splitlines()[0][:60])
                chat = history.get(chat.id)
    request, _, options = cove.prepare(call.model, call.options)
    messages, notice = fit_context(cove, history, chat.id, request.spec.num_ctx, options)
    call.body["messages"] = messages
    call.conversation = chat.id
    call.notice = str(notice) if notice else None


def _role(message: dict[str, Any]) -> str:
    """OpenAI's newer "developer" message is the system prompt by another name."""
    role = str(message.get("role") or "user")
    return "system" if role == "developer" else role


def _text_of(parts: Any) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def record(history: History, call: Call, text: str, usage: dict[str, Any], timings: dict[str, Any]) -> None:
    """Keep the answer (blocking); figures come from the engine's usage and timings."""
    if not call.conversation:
        return
    prompt_ms = timings.get("prompt_ms")
    last = ChatChunk(
        done=True,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        tokens_per_s=timings.get("predicted_per_second"),
        time_to_first_token_s=prompt_ms / 1000 if prompt_ms is not None else None,
    )
    record_answer(history, call.conversation, call.model, text, last)


def headers(call: Call) -> dict[str, str]:
    out = {HEADER: call.conversation} if call.conversation else {}
    if call.notice:
        out[CONTEXT_HEADER] = call.notice
    return out


async def bind(request: Request, call: Call, field_value: str | None, persona: str | None = None) -> None:
    """With a conversation id (field or header), the stored conversation supplies the context.

    A `persona` puts that saved persona's system prompt first, unless the request has its own.
    """
    state = state_of(request)
    if persona:
        await state.blocking(with_persona, state.history, call, persona)
    wanted = requested(field_value, request.headers)
    if wanted:
        await state.blocking(attach, state.cove, state.history, call, wanted)


def with_persona(history: History, call: Call, name: str) -> None:
    system = history.persona(name).system
    messages = call.body.get("messages") or []
    if not any(m.get("role") in ("system", "developer") for m in messages):
        call.body["messages"] = [{"role": "system", "content": system}, *messages]
