"""Consent per tool call: a turn that must ask pauses until the person answers yes, no or always.

The turn's stream carries a `ToolEvent(kind="consent")` with an id; whoever shows the turn (the
terminal in `cove run`, the dialog in the web chat) answers that id through `answer` (in-process)
or `POST /api/cove/tools/consent` (through a server). No answer within the time limit, a stopped
turn, or anything but yes/always is a refusal, and a refusal goes back to the model as a tool
error. "always" holds for that tool for the rest of the conversation (the scope).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from ..errors import BadRequest

ANSWERS = ("yes", "no", "always")
DEFAULT_TIMEOUT_S = 120.0
#: Always-allowed tools are remembered for at most this many conversations.
MAX_SCOPES = 1000


@dataclass
class _Pending:
    name: str
    scope: str
    done: threading.Event = field(default_factory=threading.Event)
    answer: str = "no"


class ConsentBroker:
    """The consents being waited for, and the tools allowed "always" per scope; thread-safe."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._always: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def open(self, scope: str, name: str) -> str | None:
        """A new consent id to ask with, or None when this tool is allowed always in this scope."""
        with self._lock:
            if name in self._always.get(scope, set()):
                return None
            consent_id = "consent_" + secrets.token_urlsafe(12)
            self._pending[consent_id] = _Pending(name, scope)
            return consent_id

    def wait(
        self, consent_id: str, timeout_s: float = DEFAULT_TIMEOUT_S, cancel: threading.Event | None = None
    ) -> str:
        """The answer ("yes", "no", "always"); "no" when none comes in time or the turn is stopped."""
        with self._lock:
            pending = self._pending.get(consent_id)
        if pending is None:
            return "no"
        waited = 0.0
        try:
            while not pending.done.wait(0.1):
                waited += 0.1
                if waited >= timeout_s or (cancel is not None and cancel.is_set()):
                    return "no"
            return pending.answer
        finally:
            with self._lock:
                self._pending.pop(consent_id, None)

    def answer(self, consent_id: str, answer: str) -> bool:
        """Answer a waiting consent; False when none by that id is waiting (answered, timed out)."""
        answer = answer.strip().lower()
        if answer not in ANSWERS:
            raise BadRequest(f"a consent answer is one of {', '.join(ANSWERS)}, not {answer!r}")
        with self._lock:
            pending = self._pending.get(consent_id)
            if pending is None or pending.done.is_set():
                return False
            if answer == "always":
                if len(self._always) >= MAX_SCOPES and pending.scope not in self._always:
                    self._always.pop(next(iter(self._always)))
                self._always.setdefault(pending.scope, set()).add(pending.name)
            pending.answer = answer
            pending.done.set()
            return True

    def waiting(self) -> list[str]:
        with self._lock:
            return list(self._pending)
