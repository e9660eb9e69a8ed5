"""Fitting a stored conversation into the model's context: the budget, and summaries of older turns.

When a conversation outgrows the model's context, the policy (COVE_CONTEXT_POLICY) decides:
"summarize" (the default) keeps the system prompt and the most recent turns and replaces the
older turns with a summary the model writes itself; "refuse" stops with a clear error. Either
way the person is told, and every message stays in the history.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.events import ChatAnswer
from ..errors import BadRequest, EngineError
from ..history import History, Message

if TYPE_CHECKING:
    from ..library.local import Cove

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


#: Tokens the chat template adds around each message (role and end-of-turn markers).
TURN_MARKERS = 6
#: Texts whose count a loaded model keeps: a conversation's turns are each counted once.
COUNT_CACHE = 4096


class TokenCounter(Protocol):
    """Counts texts' tokens, each as the model reads it."""

    def counts(self, texts: Sequence[str]) -> list[int]: ...


def guess(text: str) -> int:
    """A cautious guess where no tokenizer is at hand: about 3 characters a token."""
    return len(text) // 3


def estimate_tokens(messages: list[dict[str, Any]], counter: TokenCounter | None = None) -> int:
    """The messages' tokens with each turn's markers: counted by `counter` (the model's own
    tokenizer), else guessed."""
    texts = [str(m.get("content") or "") for m in messages]
    counts = counter.counts(texts) if counter is not None else [guess(t) for t in texts]
    return sum(counts) + TURN_MARKERS * len(texts)


class _Counts:
    """One loaded model's token counts by text digest, the most recently used kept."""

    def __init__(self, size: int = COUNT_CACHE) -> None:
        self._size = size
        self._known: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def get(self, key: bytes) -> int | None:
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
            return found

    def put(self, key: bytes, count: int) -> None:
        with self._lock:
            self._known[key] = count
            while len(self._known) > self._size:
                self._known.popitem(last=False)


#: Counts live as long as the model they were made with stays loaded.
_BY_MODEL: weakref.WeakKeyDictionary[Any, _Counts] = weakref.WeakKeyDictionary()
_BY_MODEL_LOCK = threading.Lock()


def _counts_of(model: Any) -> _Counts:
    with _BY_MODEL_LOCK:
        counts = _BY_MODEL.get(model)
        if counts is None:
            counts = _BY_MODEL[model] = _Counts()
        return counts


class ModelTokens:
    """Counts with the loaded model's own tokenizer (the engine's tokenize call, which needs no
    slot: a turn never waits behind another's answer to count); each text is tokenized once
    while the model stays loaded, so a turn tokenizes only its new messages. Where no engine is
    at hand (the model is not loaded yet, and nothing is loaded just to count; a remote model,
    whose tokenizer is upstream), the cheap guess, which errs long."""

    def __init__(self, cove: Cove, model: str, options: dict[str, Any]) -> None:
        self._cove, self._model, self._options = cove, model, options

    def counts(self, texts: Sequence[str]) -> list[int]:
        loaded = self._loaded()
        if loaded is None:
            return [guess(t) for t in texts]
        known = _counts_of(loaded)
        found = []
        for text in texts:
            key = known.key(text)
            count = known.get(key)
            if count is None:
                try:
                    count = len(loaded.tokenize(text))
                except (BadRequest, EngineError):  # it stopped, or cannot tokenize: guessed
                    found.append(guess(text))
                    continue
                known.put(key, count)
            found.append(count)
        return found

    def _loaded(self) -> Any:
        """The model loaded for this turn's settings, if it is, and runs here."""
        spec = self._cove.prepare(self._model, self._options)[0].spec
        if spec.remote:
            return None
        return next((r.model for r in self._cove.scheduler.loaded() if r.spec.key == spec.key), None)


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
    counter: TokenCounter | None = None,
) -> tuple[list[dict[str, Any]], ContextNotice | None]:
    """The messages to send now, summarising older turns first if they would not fit.

    `policy` is COVE_CONTEXT_POLICY: "summarize", or "refuse" to stop with an error instead.
    `reserve` tokens of the budget are kept free for what the turn adds (retrieved sources).
    `counter`: the model's own token counts (ModelTokens); without it they are guessed.
    """
    messages = history.context_messages(conversation_id)
    room = budget(num_ctx, options) - reserve
    needed = estimate_tokens(messages, counter)
    if needed <= room:
        return messages, None
    if policy == "refuse":
        raise BadRequest(
            f"the conversation needs about {needed} tokens but num_ctx is {num_ctx}: "
            "raise num_ctx, start a new conversation, or set COVE_CONTEXT_POLICY=summarize"
        )
    chat = history.get(conversation_id)
    older = _older_turns(chat.messages, room, counter)
    if not older:
        raise BadRequest(
            f"the last message alone needs about {estimate_tokens(messages[-1:], counter)} tokens, more "
            f"than the {num_ctx}-token context can hold with room for an answer; raise num_ctx or shorten it"
        )
    # A summary that is itself replaced now must live on in the new one, or its facts are lost.
    upto = older[-1].position
    replaced = [m for m in chat.messages if m.in_context and m.summary_of and m.position <= upto]
    summary = summarize(backend, chat.model, replaced + older, room, num_ctx)
    history.replace_with_summary(conversation_id, upto, summary)
    return history.context_messages(conversation_id), ContextNotice(len(older), num_ctx)


def _older_turns(messages: list[Message], room: int, counter: TokenCounter | None = None) -> list[Message]:
    """In-context turns to summarise: everything but the most recent ones filling half the room."""
    live = [m for m in messages if m.in_context and m.role != "system"]
    kept = 0
    keep_from = len(live)
    for index in range(len(live) - 1, -1, -1):
        kept += estimate_tokens([{"content": live[index].content}], counter)
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
