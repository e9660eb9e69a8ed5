"""A fake engine that answers with scripted tool calls, for the tool loop's tests (no weights)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes import FakeEngine, FakeModel

from cove.engine.base import ChunkCallback, LoadSpec

#: One scripted answer: text, or tool calls as (name, arguments) where arguments is data or raw text.
Call = tuple[str, Any]
Answer = str | list[Call] | Callable[[dict[str, Any]], "str | list[Call]"]


@dataclass
class ToolScriptEngine(FakeEngine):
    """Answers from `script` in order (then as `after`); every request is kept in `requests`."""

    script: list[Answer] = field(default_factory=list)
    #: What it answers once the script is spent (None: the tool's result, or the user's words).
    after: Answer | None = None

    def __call__(self, spec: LoadSpec) -> FakeModel:
        with self.lock:
            self.loads.append(spec)
        return ScriptedModel(self, spec)


class ScriptedModel(FakeModel):
    engine: ToolScriptEngine

    def _next(self, body: dict[str, Any]) -> str | list[Call]:
        with self.engine.lock:
            item = self.engine.script.pop(0) if self.engine.script else self.engine.after
        if item is None:
            return default_answer(body)
        return item(body) if callable(item) else item

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if "prompt" in body:
            return super().chat(body, on_chunk)
        with self.engine.lock:
            self.engine.requests.append(body)
        answer = self._next(body)
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        timings = {"prompt_ms": 1.0, "predicted_ms": 10.0, "predicted_per_second": 100.0}
        pairs = [] if isinstance(answer, str) else answer
        calls = [_call(i, name, args) for i, (name, args) in enumerate(pairs)]
        text = answer if isinstance(answer, str) else ""
        finish = "tool_calls" if calls else "stop"
        if on_chunk is None:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = calls
            return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            time.sleep(self.engine.token_delay)
            piece = word if i == len(words) - 1 else word + " "
            if on_chunk({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}):
                finish = "cancelled"
                break
        for i, call in enumerate(calls):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2  # arguments arrive in pieces, as the engine streams them
            name = call["function"]["name"]
            first = {**call, "index": i, "function": {"name": name, "arguments": arguments[:half]}}
            rest = {"index": i, "function": {"arguments": arguments[half:]}}
            on_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]})
            on_chunk({"choices": [{"index": 0, "delta": {"tool_calls": [rest]}, "finish_reason": None}]})
        on_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        last = {"choices": [], "usage": usage, "timings": timings}
        on_chunk(last)
        return last


def _call(index: int, name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"c{index}x", "type": "function", "function": {"name": name, "arguments": text}}


def default_answer(body: dict[str, Any]) -> str:
    """After a tool ran: "Tool said: <its result>"; otherwise the fake's usual echo."""
    last = body["messages"][-1]
    if last.get("role") == "tool":
        return f"Tool said: {last.get('content')}"
    users = [m for m in body["messages"] if m.get("role") == "user"]
    return f"You said: {users[-1]['content'] if users else ''}"
