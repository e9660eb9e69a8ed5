"""The typed values the history hands out (conversations, messages, hits, usage) and takes in (imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Message:
    """One turn. `in_context=False`: replaced by a summary, kept for the person but not sent to the model."""

    id: int
    conversation_id: str
    position: int
    role: str
    content: str
    created_at: datetime
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    model: str | None = None
    summary_of: tuple[int, int] | None = None  # first and last position this summary stands for
    in_context: bool = True
    cut_off: str | None = None  # why the answer stopped before its end; None: it is whole


@dataclass(frozen=True)
class Conversation:
    """A conversation's settings and every message in it, summarised ones included, by position."""

    id: str
    title: str | None
    model: str
    persona: str | None
    system: str | None
    parameters: dict[str, Any]
    num_ctx: int | None
    created_at: datetime
    updated_at: datetime
    source: str
    external_id: str | None
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class ConversationSummary:
    """A line of `list()`: a conversation without its messages; `preview` is its first user message."""

    id: str
    title: str | None
    model: str
    persona: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    preview: str | None


@dataclass(frozen=True)
class SearchHit:
    """A message that matched; `snippet` marks the matching words with [ and ]."""

    conversation_id: str
    title: str | None
    message_id: int
    position: int
    role: str
    snippet: str


@dataclass(frozen=True)
class Persona:
    name: str
    system: str
    created_at: datetime


@dataclass(frozen=True)
class ModelUsage:
    """One model's answers in a period; averages are None when no answer recorded the figure."""

    model: str
    answers: int
    tokens_in: int
    tokens_out: int
    avg_tokens_per_s: float | None
    avg_ttft_ms: float | None


@dataclass(frozen=True)
class Stats:
    """Usage between `since` (inclusive) and `until` (exclusive); None means unbounded."""

    since: datetime | None
    until: datetime | None
    conversations: int
    messages: int
    tokens_in: int
    tokens_out: int
    by_model: dict[str, ModelUsage]


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int  # already in the history (same id or external id)


@dataclass(frozen=True)
class NewMessage:
    """A message to store, as an importer or `add_message` describes it; timestamps are db text."""

    position: int
    role: str
    content: str
    created_at: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    model: str | None = None
    summary_of: tuple[int, int] | None = None
    in_context: bool = True
    cut_off: str | None = None
    # The sources an imported answer cited (an export's `citations`), kept beside it.
    citations: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class NewConversation:
    """A conversation to store; `id=None` picks a fresh one, `external_id` makes imports idempotent."""

    model: str
    created_at: str
    updated_at: str
    id: str | None = None
    title: str | None = None
    persona: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    num_ctx: int | None = None
    source: str = "cli"
    external_id: str | None = None
    messages: list[NewMessage] = field(default_factory=list)
    #: The document collections its turns answer from, and whether only from them.
    collections: list[str] = field(default_factory=list)
    strict: bool = False
