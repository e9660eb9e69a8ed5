"""Fitting a stored conversation into the model's context: the budget, and summaries of older turns.

When a conversation outgrows the model's context, the policy (COVE_CONTEXT_POLICY) decides:
"summarize" (the default) keeps the system prompt and the most recent turns and replaces the
older turns with a summary the model writes itself; "refuse" stops with a clear error. Either
way the person is told, and every message stays in the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..engine.events import ChatAnswer
from ..errors import BadRequest
from ..history import History, Message

SUMMARY_PROMPT = (
    "Summarize the conversation below in under 150 words. Keep names, facts, numbers and decisions; "
    "write it as notes for yourself, not as a reply.\n\n"
)


class Chatter(Protocol):
    """What writing a summary needs: one whole answer from the conversation's model."""

    def chat(
        self, model: str, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> ChatAnswer: ...


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
    policy: str = "summarize",
    reserve: int = 0,
) -> tuple[list[dict[str, Any]], ContextNotice | None]:
    """The messages to send now, summarising older turns first if they would not fit.

    `policy` is COVE_CONTEXT_POLICY: "summarize", or "refuse" to stop with an error instead.
    `reserve` tokens of the budget are kept free for what the turn adds (retrieved sources).
    """
    messages = history.context_messages(conversation_id)
    room = budget(num_ctx, options) - reserve
    if estimate_tokens(messages) <= room:
        return messages, None
    if policy == "refuse":
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
    text = backend.chat(model, request, options=options).content
    return text.strip() or "(the earlier conversation could not be summarised)"
