"""Bridges the engine's callback streaming (on its own thread) to iterators that can be closed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .base import ChunkCallback

Run = Callable[[ChunkCallback], dict[str, Any]]


def stream_chunks(run: Run) -> Iterator[dict[str, Any]]:
    """Yield each chunk as the engine makes it; closing the iterator stops the generation."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def relay(chunk: dict[str, Any]) -> bool:
        items.put(("chunk", chunk))
        return stop.is_set()

    def work() -> None:
        try:
            items.put(("done", run(relay)))
        except BaseException as exc:  # handed to the consumer, who decides what it means
            items.put(("error", exc))

    worker = threading.Thread(target=work, name="cove-generate", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = items.get()
            if kind == "chunk":
                yield item
            elif kind == "done":
                return
            else:
                raise item
    finally:
        stop.set()
        # The engine stops at its next token; wait for it, so no engine call outlives its
        # caller (an engine thread still running at interpreter exit aborts the process).
        worker.join(timeout=10)
