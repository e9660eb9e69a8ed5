"""The one interface the CLI talks to: the in-process library and a running server's client both fit it.

The type checker holds both implementations to it (`_both_fit` below), and
tests/test_backends.py runs the same scenarios against each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..chat.service import TurnRequest, TurnStream
from ..config import Settings
from ..engine.events import ChatChunk, LoadedInfo
from ..engine.reranking import Reranked
from ..store.models import Manifest
from ..store.progress import ProgressCallback


class Backend(Protocol):
    settings: Settings

    def models(self) -> list[Manifest]: ...

    def model(self, name: str) -> Manifest: ...

    def pull(self, ref: str, progress: ProgressCallback = ...) -> Manifest: ...

    def remove(self, name: str) -> Manifest: ...

    def copy(self, source: str, destination: str) -> Manifest: ...

    def create(self, name: str, recipe_text: str, folder: Path | None = None) -> Manifest: ...

    def loaded(self) -> list[LoadedInfo]: ...

    def stop(self, name: str) -> bool: ...

    def chat_turn(self, request: TurnRequest) -> TurnStream:
        """One turn, stored in a conversation when the request names one; the answer streams."""
        ...

    def stream_chat(
        self, model: str, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> Iterator[ChatChunk]: ...

    def rerank(self, model: str, query: str, documents: list[str], *, top_n: int | None = None) -> Reranked:
        """Each document scored by a reranking model for how well it answers `query`, best first."""
        ...

    def close(self) -> None: ...


if TYPE_CHECKING:
    from .local import Cove
    from .remote import RemoteCove

    def _both_fit(local: Cove, remote: RemoteCove) -> tuple[Backend, Backend]:
        return local, remote  # mypy fails here the day either one drifts from Backend
