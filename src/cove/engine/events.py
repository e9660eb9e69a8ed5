"""The typed results the library hands to Python code: models, chat chunks and answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatChunk:
    """One streamed piece of an answer; the last one has `done=True` and the figures."""

    content: str = ""
    done: bool = False
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    time_to_first_token_s: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ChatAnswer:
    """A whole answer, for callers that did not ask to stream."""

    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    tokens_per_s: float | None
    time_to_first_token_s: float | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


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
