"""Chatting inside a stored conversation: the context budget, summaries, and saving every turn.

When a conversation outgrows the model's context, the policy (COVE_CONTEXT_POLICY) decides:
"summarize" (the default) keeps the system prompt and the most recent turns and replaces the
older turns with a summary the model writes itself; "refuse" stops with a clear error. Either
way the person is told, and every message stays in the history.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from ..engine.events import ChatChunk
from ..engine.options import context_size
from ..errors import BadRequest
from ..history import History, Message
from ..store.models import Manifest

SUMMARY_PROMPT = (
    "Summarize the conversation below in under 150 words. Keep names, facts, numbers and decisions; "
    "write it as notes for yourself, not as a reply.\n\n"
)


class Chatter(Protocol):
    """What a turn needs from a backend (the library, or a running server)."""

    def model(self, name: str) -> Manifest: ...

    def stream_chat(
        self, model: str, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> Generator[ChatChunk, None, None]: ...


@dataclass(frozen=True)
class ContextNotice:
    """Told to the person whenever older turns were summarised to make room."""

    summarized: int
    num_ctx: int

    def __str__(self) -> str:
        return (
            f"the conversation outgrew the {self.num_ctx}-token context: "
            f"{self.summarized} older messages were replaced by a summary (all are kept in history)"
        )


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A cautious guess (about 3 characters a token, plus each turn's markers)."""
    return sum(len(str(m.get("content") or "")) // 3 + 6 for m in messages)


def budget(num_ctx: int, options: dict[str, Any]) -> int:
    """Room for the prompt: the context less what the answer may need."""
    answer = options.get("num_predict")
    reserve = min(answer if isinstance(answer, int) and answer > 0 else num_ctx // 4, num_ctx // 2)
    return num_ctx - reserve


def fit_context(
    backend: Chatter,
    history: History,
    conversation_id: str,
    num_ctx: int,
    options: dict[str, Any],
) -> tuple[list[dict[str, Any]], ContextNotice | None]:
    """The messages to send now, summarising older turns first if they would not fit."""
    messages = history.context_messages(conversation_id)
    room = budget(num_ctx, options)
    if estimate_tokens(messages) <= room:
        return messages, None
    if policy() == "refuse":
        raise BadRequest(
            f"the conversation needs about {estimate_tokens(messages)} tokens but num_ctx is {num_ctx}: "
            "raise num_ctx, start a new conversation, or set COVE_CONTEXT_POLICY=summarize"
        )
    chat = history.get(conversation_id)
    older = _older_turns(chat.messages, room)
    if not older:
        raise BadRequest(
            f"the last message alone needs about {estimate_tokens(messages[-1:])} tokens, more than "
            f"the {num_ctx}-token context can hold with room for an answer; raise num_ctx or shorten it"
        )
    # A summary that is itself replaced now must live on in the new one, or its facts are lost.
    upto = older[-1].position
    replaced = [m for m in chat.messages if m.in_context and m.summary_of and m.position <= upto]
    summary = summarize(backend, chat.model, replaced + older, room, num_ctx)
    history.replace_with_summary(conversation_id, upto, summary)
    return history.context_messages(conversation_id), ContextNotice(len(older), num_ctx)


def _older_turns(messages: list[Message], room: int) -> list[Message]:
    """In-context turns to summarise: everything but the most recent ones filling half the room."""
    live = [m for m in messages if m.in_context and m.role != "system"]
    kept = 0
    keep_from = len(live)
    for index in range(len(live) - 1, -1, -1):
        kept += estimate_tokens([{"content": live[index].content}])
        if kept > room // 2 and index < len(live) - 1:
            break
        keep_from = index
    return live[:keep_from]


def summarize(backend: Chatter, model: str, older: list[Message], room: int, num_ctx: int) -> str:
    transcript = "\n".join(f"{'earlier summary' if m.summary_of else m.role}: {m.content}" for m in older)
    limit = max(room - 400, 200) * 3  # characters: leave the summary prompt and answer room
    request = [{"role": "user", "content": SUMMARY_PROMPT + transcript[-limit:]}]
    # The chat's own num_ctx: another value would load a second copy of the model just for this.
    options = {"num_ctx": num_ctx, "num_predict": 200, "temperature": 0.2}
    text = "".join(chunk.content for chunk in backend.stream_chat(model, request, options=options))
    return text.strip() or "(the earlier conversation could not be summarised)"


def policy() -> str:
    value = os.environ.get("COVE_CONTEXT_POLICY", "summarize").strip().lower()
    if value not in ("summarize", "refuse"):
        raise BadRequest(f"COVE_CONTEXT_POLICY must be summarize or refuse, not {value!r}")
    return value


def record_answer(
    history: History, conversation_id: str, model: str, text: str, last: ChatChunk | None
) -> None:
    """Keep the answer with its figures, so `cove stats` can show them later."""
    ttft = last.time_to_first_token_s if last else None
    history.add_message(
        conversation_id,
        "assistant",
        text,
        prompt_tokens=last.prompt_tokens if last else None,
        completion_tokens=last.completion_tokens if last else None,
        ttft_ms=ttft * 1000 if ttft is not None else None,
        tokens_per_s=last.tokens_per_s if last else None,
        model=model,
    )


def turn(
    backend: Chatter,
    history: History,
    conversation_id: str,
    text: str,
    *,
    options: dict[str, Any] | None = None,
) -> tuple[ContextNotice | None, Generator[ChatChunk, None, None]]:
    """Store the user's message, fit the context, and stream the answer (stored when it ends).

    Closing the stream early stops the answer; what arrived until then is stored.
    """
    chat = history.get(conversation_id)
    opts = {**chat.parameters, **(options or {})}
    if chat.num_ctx and not opts.get("num_ctx"):
        opts["num_ctx"] = chat.num_ctx  # the model must be loaded with the context we budget for
    num_ctx = context_window(backend, chat.model, opts)
    history.add_message(conversation_id, "user", text)
    if not chat.title and not chat.messages:
        history.rename(conversation_id, text.strip().splitlines()[0][:60] if text.strip() else None)
    messages, notice = fit_context(backend, history, conversation_id, num_ctx, opts)
    return notice, _recorded(backend, history, chat.id, chat.model, messages, opts)


def context_window(backend: Chatter, model: str, options: dict[str, Any]) -> int:
    """The context the model will be loaded with: the options, else its recipe, else what it knows."""
    manifest = backend.model(model)
    return context_size(manifest.recipe_obj(), options, manifest.info.get("context_length"))


def _recorded(
    backend: Chatter,
    history: History,
    conversation_id: str,
    model: str,
    messages: list[dict[str, Any]],
    options: dict[str, Any],
) -> Generator[ChatChunk, None, None]:
    parts: list[str] = []
    last: ChatChunk | None = None
    stream = backend.stream_chat(model, messages, options=options)
    try:
        for chunk in stream:
            parts.append(chunk.content)
            if chunk.done:
                last = chunk
            yield chunk
    finally:
        stream.close()
        record_answer(history, conversation_id, model, "".join(parts), last)
