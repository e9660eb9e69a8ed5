"""Runs chat turns for both APIs off the event loop, handing their typed events back to it, with metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import Request

from ..chat.service import ChatService, Turn, TurnRequest
from ..engine.events import ChatAnswer, ChatChunk, Usage
from ..engine.streaming import final_event
from .metrics import Metrics


class Generator:
    """The async face of the conversation service: one implementation behind `/api` and `/v1`."""

    def __init__(self, service: ChatService, metrics: Metrics, workers: int = 256) -> None:
        self.service = service
        self.metrics = metrics
        # Engine calls block for a whole answer; give them their own threads, not the event loop's.
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cove-engine")

    async def blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def prepare(self, request: TurnRequest) -> Turn:
        """Settings, stored messages and the fitted context (reads and writes the history)."""
        turn: Turn = await self.blocking(self.service.prepare, request)
        return turn

    async def once(self, turn: Turn, client: Request | None = None) -> ChatAnswer:
        """A whole answer. It is made streamed all the same, so that when `client` goes away
        before it is done the engine stops and the slot is free within a second."""
        cancel = threading.Event()

        def work() -> ChatAnswer:
            return self.service.run(turn, lambda _: cancel.is_set(), cancel)

        watching = asyncio.create_task(_watch(client, cancel)) if client is not None else None
        try:
            answer: ChatAnswer = await asyncio.get_running_loop().run_in_executor(self.pool, work)
        finally:
            if watching is not None:
                watching.cancel()
        self._count(turn.model, answer.usage)
        if answer.time_to_first_token_s is not None:
            self.metrics.ttft.labels(turn.model).observe(answer.time_to_first_token_s)
        return answer

    async def stream(self, turn: Turn) -> AsyncIterator[ChatChunk]:
        """Events as they come, then one `done` event once the answer is kept.

        Leaving the loop early (the client went away) stops the engine; what arrived is kept.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def relay(event: ChatChunk) -> bool:
            loop.call_soon_threadsafe(items.put_nowait, ("event", event))
            return cancel.is_set()

        def work() -> None:
            try:
                answer = self.service.run(turn, relay, cancel)
                loop.call_soon_threadsafe(items.put_nowait, ("done", answer))
            except BaseException as exc:  # handed to the request, which answers with it
                loop.call_soon_threadsafe(items.put_nowait, ("error", exc))

        loop.run_in_executor(self.pool, work)
        try:
            async for event in self._observed(turn.model, items):
                yield event
        finally:
            cancel.set()

    async def _observed(self, model: str, items: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[ChatChunk]:
        started = last = time.perf_counter()
        first = True
        ttft, token_gap = self.metrics.ttft.labels(model), self.metrics.token_gap.labels(model)
        while True:
            kind, item = await items.get()
            if kind == "error":
                raise item
            if kind == "done":
                self._count(model, item.usage)
                yield final_event(item)
                return
            if item.content or item.tool_calls:
                now = time.perf_counter()
                if first:
                    ttft.observe(now - started)
                    first = False
                else:
                    token_gap.observe(now - last)
                last = now
            yield item

    def _count(self, model: str, usage: Usage) -> None:
        self.metrics.tokens.labels(model, "in").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(model, "out").inc(usage.completion_tokens)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


async def _watch(client: Request, cancel: threading.Event, every_s: float = 0.25) -> None:
    """Set `cancel` once the client has hung up (its request body is read already)."""
    while not cancel.is_set():
        if await client.is_disconnected():
            cancel.set()
            return
        await asyncio.sleep(every_s)
