"""The typed stream of engine events, parsed once where the engine returns: every consumer reads these.

The engine speaks OpenAI-shaped dicts. `events_of` turns one streamed chunk into `ChatChunk`s,
`answer_of` turns a whole result into a `ChatAnswer`, and `Assembler` folds a stream back into
the answer it amounts to (text, finished tool calls, usage), for history and for whole replies.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as it streams: the id and name come first, the arguments in pieces."""

    index: int = 0
    id: str | None = None
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ToolCall:
    """A finished tool call; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments as data; text that is not JSON is kept under "_raw" rather than lost."""
        try:
            return json.loads(self.arguments) if self.arguments.strip() else {}
        except json.JSONDecodeError:
            return {"_raw": self.arguments}


@dataclass(frozen=True)
class Usage:
    """What an answer cost and how fast it came."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    prompt_ms: float | None = None
    predicted_ms: float | None = None
    tokens_per_s: float | None = None
    #: Time the scheduler spent loading the model for this call (0 when it was loaded already).
    load_s: float = 0.0


@dataclass(frozen=True)
class ChatChunk:
    """One streamed piece of an answer; the last one has `done=True` and the figures."""

    content: str = ""
    done: bool = False
    finish_reason: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    #: Per-token log-probabilities in OpenAI's shape (token, logprob, bytes, top_logprobs).
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""
    #: Which choice this piece belongs to (several prompts in one completion request).
    index: int = 0
    usage: Usage | None = None
    time_to_first_token_s: float | None = None
    #: On the last event: the answer's `context`, when it was asked for (see ChatAnswer).
    context: list[int] | None = None

    @property
    def prompt_tokens(self) -> int | None:
        return self.usage.prompt_tokens if self.usage else None

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.completion_tokens if self.usage else None

    @property
    def tokens_per_s(self) -> float | None:
        return self.usage.tokens_per_s if self.usage else None


@dataclass(frozen=True)
class Choice:
    """One whole answer among several (several prompts in one completion request)."""

    index: int
    content: str
    finish_reason: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""


@dataclass(frozen=True)
class ChatAnswer:
    """A whole answer, for callers that did not ask to stream."""

    content: str
    finish_reason: str | None
    usage: Usage = field(default_factory=Usage)
    time_to_first_token_s: float | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str = ""
    #: Every choice, the first of which the fields above repeat.
    choices: list[Choice] = field(default_factory=list)
    #: Ollama's /api/generate `context`: the conversation so far as tokens, when it was asked for.
    context: list[int] | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def tokens_per_s(self) -> float | None:
        return self.usage.tokens_per_s

    def with_load(self, seconds: float) -> ChatAnswer:
        return replace(self, usage=replace(self.usage, load_s=seconds))


@dataclass(frozen=True)
class LoadedInfo:
    """A model held in memory right now (`cove ps`)."""

    name: str
    digest: str
    size: int
    num_ctx: int
    num_parallel: int
    active: int
    expires_in_s: float | None
    #: Where a remote model answers (its upstreams' host:port); empty for a model running here.
    runs_on: tuple[str, ...] = ()


def usage_of(raw: dict[str, Any]) -> Usage:
    usage = raw.get("usage") or {}
    timings = raw.get("timings") or {}
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(details.get("cached_tokens") or 0),
        prompt_ms=timings.get("prompt_ms"),
        predicted_ms=timings.get("predicted_ms"),
        tokens_per_s=timings.get("predicted_per_second"),
    )


def events_of(raw: dict[str, Any]) -> list[ChatChunk]:
    """The events in one engine chunk: a piece per choice, and the usage once it arrives."""
    out: list[ChatChunk] = []
    for choice in raw.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content") or choice.get("text") or ""
        calls = [_delta(d) for d in delta.get("tool_calls") or []]
        logprobs = (choice.get("logprobs") or {}).get("content") or []
        reasoning = delta.get("reasoning_content") or ""
        finish = choice.get("finish_reason")
        if text or calls or logprobs or reasoning or finish:
            index = int(choice.get("index") or 0)
            out.append(ChatChunk(text, False, finish, calls, logprobs, reasoning, index))
    if raw.get("usage"):
        out.append(ChatChunk(done=True, usage=usage_of(raw)))
    return out


def _delta(raw: dict[str, Any]) -> ToolCallDelta:
    function = raw.get("function") or {}
    arguments = function.get("arguments") or ""
    engine_id = raw.get("id") or None
    return ToolCallDelta(
        index=int(raw.get("index") or 0),
        # OpenAI's form ("call_…"); the engine's own ids are bare letters and digits.
        id=engine_id if not engine_id or engine_id.startswith("call_") else f"call_{engine_id}",
        name=function.get("name") or "",
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
    )


def answer_of(raw: dict[str, Any]) -> ChatAnswer:
    """A whole (not streamed) engine result."""
    choices = [_choice(c) for c in raw.get("choices") or []] or [Choice(0, "", None)]
    first = choices[0]
    return ChatAnswer(
        content=first.content,
        finish_reason=first.finish_reason,
        usage=usage_of(raw),
        time_to_first_token_s=_ttft(raw),
        tool_calls=first.tool_calls,
        logprobs=first.logprobs,
        reasoning=first.reasoning,
        choices=choices,
    )


def _choice(raw: dict[str, Any]) -> Choice:
    message = raw.get("message") or {}
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        piece = _delta({**call, "index": i})
        calls.append(ToolCall(piece.id or call_id(), piece.name, piece.arguments))
    return Choice(
        index=int(raw.get("index") or 0),
        content=message.get("content") or raw.get("text") or "",
        finish_reason=raw.get("finish_reason"),
        tool_calls=calls,
        logprobs=(raw.get("logprobs") or {}).get("content") or [],
        reasoning=message.get("reasoning_content") or "",
    )


def _ttft(raw: dict[str, Any]) -> float | None:
    prompt_ms = (raw.get("timings") or {}).get("prompt_ms")
    return prompt_ms / 1000 if prompt_ms is not None else None


def call_id() -> str:
    """OpenAI's form for a tool-call id, for calls the engine sent without one."""
    return f"call_{secrets.token_hex(12)}"


class Assembler:
    """Folds a stream of events back into the whole answer it makes, choice by choice."""

    def __init__(self) -> None:
        self.texts: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.logprobs: dict[int, list[dict[str, Any]]] = {}
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.first_token_s: float | None = None

    def add(self, event: ChatChunk) -> None:
        if event.done:
            self.usage = event.usage or self.usage
            return
        i = event.index
        self.texts.setdefault(i, []).append(event.content)
        self.reasoning.setdefault(i, []).append(event.reasoning)
        self.logprobs.setdefault(i, []).extend(event.logprobs)
        if event.finish_reason:
            self.finish[i] = event.finish_reason
        for piece in event.tool_calls:
            entry = self.calls.setdefault((i, piece.index), {"id": None, "name": "", "arguments": ""})
            entry["id"] = entry["id"] or piece.id
            entry["name"] += piece.name
            entry["arguments"] += piece.arguments

    @property
    def text(self) -> str:
        return "".join(self.texts.get(0, []))

    def answer(self) -> ChatAnswer:
        indexes = sorted(set(self.texts) | set(self.finish)) or [0]
        choices = [self._choice(i) for i in indexes]
        first = choices[0]
        return ChatAnswer(
            content=first.content,
            finish_reason=first.finish_reason,
            usage=self.usage or Usage(),
            time_to_first_token_s=self.first_token_s,
            tool_calls=first.tool_calls,
            logprobs=first.logprobs,
            reasoning=first.reasoning,
            choices=choices,
        )

    def _choice(self, index: int) -> Choice:
        calls = [
            ToolCall(entry["id"] or call_id(), entry["name"], entry["arguments"])
            for (i, _), entry in sorted(self.calls.items())
            if i == index
        ]
        return Choice(
            index=index,
            content="".join(self.texts.get(index, [])),
            finish_reason=self.finish.get(index),
            tool_calls=calls,
            logprobs=self.logprobs.get(index, []),
            reasoning="".join(self.reasoning.get(index, [])),
        )
