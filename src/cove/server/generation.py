"""Runs one chat or completion for either API off the event loop, streaming chunks back to it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..library.local import Cove
from .metrics import Metrics


@dataclass
class Call:
    """One generation, already translated into the engine's OpenAI-shaped body."""

    model: str
    body: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | None = None
    completion: bool = False
    #: The stored conversation this call belongs to, and what the context policy did to it.
    conversation: str | None = None
    notice: str | None = None


class Generator:
    """The single implementation of chat behind `/api` and `/v1`."""

    def __init__(self, cove: Cove, metrics: Metrics, workers: int = 256) -> None:
        self.cove = cove
        self.metrics = metrics
        # Engine calls block for a whole answer; give them their own threads, not the event loop's.
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cove-engine")
        #: Keeps the answer of a conversation-bound call: (call, text, usage, timings).
        self.on_answer: Callable[[Call, str, dict[str, Any], dict[str, Any]], None] | None = None

    async def once(self, call: Call) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        result: dict[str, Any] = await loop.run_in_executor(self.pool, self._run, call, None, None)
        self._count(call.model, result.get("usage") or {})
        self.metrics.ttft.labels(call.model).observe(_prompt_seconds(result, started))
        if call.conversation and self.on_answer:
            choice = (result.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
            usage, timings = result.get("usage") or {}, result.get("timings") or {}
            await loop.run_in_executor(self.pool, self.on_answer, call, text, usage, timings)
        return result

    async def stream(self, call: Call) -> AsyncIterator[dict[str, Any]]:
        """Engine chunks as they come; leaving the loop early (client gone) stops the engine."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def relay(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(items.put_nowait, ("chunk", chunk))
            return cancel.is_set()

        def work() -> None:
            try:
                result = self._run(call, relay, cancel)
                loop.call_soon_threadsafe(items.put_nowait, ("done", result))
            except BaseException as exc:  # handed to the request, which answers with it
                loop.call_soon_threadsafe(items.put_nowait, ("error", exc))

        call.body["stream"] = True
        call.body["stream_options"] = {"include_usage": True}
        loop.run_in_executor(self.pool, work)
        parts: list[str] = []
        final: dict[str, Any] = {}
        finished = False
        try:
            async for chunk in self._observed(call.model, items):
                parts.extend(_texts(chunk))
                if chunk.get("usage"):
                    final = chunk
                yield chunk
            finished = True
        finally:
            cancel.set()
            if call.conversation and self.on_answer:  # what arrived is kept, even if cut short
                usage, timings = final.get("usage") or {}, final.get("timings") or {}
                saved = loop.run_in_executor(self.pool, self.on_answer, call, "".join(parts), usage, timings)
                if finished:  # kept before the stream's end is sent, so the client's next turn sees it
                    await saved

    async def _observed(
        self, model: str, items: asyncio.Queue[tuple[str, Any]]
    ) -> AsyncIterator[dict[str, Any]]:
        started = last = time.perf_counter()
        first = True
        while True:
            kind, item = await items.get()
            if kind == "error":
                raise item
            if kind == "done":
                return
            if _has_token(item):
                now = time.perf_counter()
                if first:
                    self.metrics.ttft.labels(model).observe(now - started)
                    first = False
                else:
                    self.metrics.token_gap.labels(model).observe(now - last)
                last = now
            if item.get("usage"):
                self._count(model, item["usage"])
            yield item

    def _run(self, call: Call, relay: Any, cancel: threading.Event | None) -> dict[str, Any]:
        return self.cove.run_chat(
            call.model,
            call.body,
            options=call.options,
            keep_alive=call.keep_alive,
            on_chunk=relay,
            completion=call.completion,
            cancel=cancel,
        )

    def _count(self, model: str, usage: dict[str, Any]) -> None:
        self.metrics.tokens.labels(model, "in").inc(usage.get("prompt_tokens", 0))
        self.metrics.tokens.labels(model, "out").inc(usage.get("completion_tokens", 0))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _texts(chunk: dict[str, Any]) -> list[str]:
    out = []
    for choice in chunk.get("choices") or []:
        out.append((choice.get("delta") or {}).get("content") or choice.get("text") or "")
    return out


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
            return True
    return False


def _prompt_seconds(result: dict[str, Any], started: float) -> float:
    timings = result.get("timings") or {}
    if "prompt_ms" in timings:
        return float(timings["prompt_ms"]) / 1000
    return time.perf_counter() - started
