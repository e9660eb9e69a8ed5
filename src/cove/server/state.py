"""What every route shares: the library handle, the generator, metrics and the security policy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from ..history import History
from ..library.local import Cove
from .generation import Generator
from .guard import Policy
from .metrics import Metrics


@dataclass
class ServerState:
    cove: Cove
    metrics: Metrics
    generator: Generator
    policy: Policy
    #: One lock per blob digest: two uploads of one blob share a partial file, so they take turns.
    uploads: dict[str, asyncio.Lock] = field(default_factory=dict)

    @property
    def history(self) -> History:
        """The conversation store: the library's own, so the server and its chats share one."""
        return self.cove.history

    def scrub(self, message: str) -> str:
        """Error text never shows where the user's files live, however the path was spelled."""
        home = self.cove.settings.home
        for spelling in sorted({str(home.resolve()), str(home)}, key=len, reverse=True):
            message = message.replace(spelling, "COVE_HOME")
        return message

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """Store work (hashing, copying) off the event loop, on the engine calls' own threads."""
        return await self.generator.blocking(fn, *args)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.cove
    return state
