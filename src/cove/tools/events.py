"""The tool steps of a turn as stream events: a consent asked, a tool run (or refused), the step limit.

A `ToolEvent` is a `ChatChunk` with no text, so every consumer of a turn's stream can carry it
along; the doors that know it (the Ollama stream the web chat and the CLI read, the OpenAI
stream) show it, the others pass over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..engine.events import ChatChunk

#: consent: the person is asked (answer with `consent_id`); ran / error: a run ended;
#: refused: the person (or the time to answer) said no; limit: the step limit was reached.
Kind = Literal["consent", "ran", "error", "refused", "limit"]
KINDS = ("consent", "ran", "error", "refused", "limit")
#: How much of a result the event shows (the model gets all of it).
PREVIEW_CHARS = 500


@dataclass(frozen=True)
class ToolEvent(ChatChunk):
    """One tool step, for the person watching the answer come."""

    kind: Kind = "ran"
    name: str = ""
    arguments: Any = None
    call_id: str = ""
    consent_id: str | None = None
    #: A short preview of the result, or the error, or what the limit means.
    message: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.arguments is not None:
            out["arguments"] = self.arguments
        if self.call_id:
            out["call_id"] = self.call_id
        if self.consent_id:
            out["consent_id"] = self.consent_id
        if self.message:
            out["message"] = self.message[:PREVIEW_CHARS]
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 3)
        return out


def tool_event(value: Any) -> ToolEvent | None:
    """The event a stream line's `cove_tool` field describes (for clients of a running server)."""
    if not isinstance(value, dict) or value.get("kind") not in KINDS:
        return None
    return ToolEvent(
        kind=value["kind"],
        name=str(value.get("name") or ""),
        arguments=value.get("arguments"),
        call_id=str(value.get("call_id") or ""),
        consent_id=value.get("consent_id"),
        message=str(value.get("message") or ""),
        seconds=value.get("seconds"),
    )
