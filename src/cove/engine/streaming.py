"""Bridges the engine's callback streaming (on its own thread) to iterators that can be closed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .events import ChatAnswer, ChatChunk

#: Receives each event as it is made; returning True stops the answer.
EventCallback = Callable[[ChatChunk], bool]
Run = Callable[[EventCallback], ChatAnswer]


def final_event(answer: ChatAnswer) -> ChatChunk:
    """The closing event of a stream: the whole answer's finish reason and figures."""
    return ChatChunk(
        done=True,
        finish_reason=answer.finish_reason,
        usage=answer.usage,
        time_to_first_token_s=answer.time_to_first_token_s,
        context=answer.context,
    )


def stream_events(run: Run) -> Iterator[ChatChunk]:
    """Yield each event as the engine makes it, then one `done` event; closing the iterator stops it."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def relay(event: ChatChunk) -> bool:
        items.put(("event", event))
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
            if kind == "event":
                yield item
            elif kind == "done":
                yield final_event(item)
                return
            else:
                raise item
    finally:
        stop.set()
        # The engine stops at its next token; wait for it, so no engine call outlives its
        # caller (an engine thread still running at interpreter exit aborts the process).
        worker.join(timeout=10)
