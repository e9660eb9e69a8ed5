"""Progress of a pull, in the shape Ollama streams it (status, digest, total, completed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PullProgress:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


ProgressCallback = Callable[[PullProgress], None]


def ignore_progress(_: PullProgress) -> None:
    """The default when nobody is watching."""
