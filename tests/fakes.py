"""A fake engine for logic tests: deterministic answers, recorded requests, no weights."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cove.engine.base import ChunkCallback, LoadSpec


@dataclass
class FakeEngine:
    """The factory: `Cove(settings, factory=engine)`; remembers every load and request."""

    token_delay: float = 0.0
    loads: list[LoadSpec] = field(default_factory=list)
    closed: list[LoadSpec] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, spec: LoadSpec) -> FakeModel:
        with self.lock:
            self.loads.append(spec)
        return FakeModel(self, spec)


class FakeModel:
    """Answers "You said: <last user message>" one word per token."""

    alive = True
    engines = 1

    def __init__(self, engine: FakeEngine, spec: LoadSpec) -> None:
        self.engine = engine
        self.spec = spec

    def _words(self, body: dict[str, Any]) -> tuple[list[str], str]:
        if "prompt" in body:
            prompt = body["prompt"]
            text = f"after: {detokenize(prompt) if isinstance(prompt, list) else prompt}"
        else:
            users = [m for m in body["messages"] if m.get("role") == "user"]
            text = f"You said: {users[-1]['content'] if users else ''}"
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip()
        limit = body.get("max_tokens")
        if limit and len(words) > limit:
            return words[:limit], "length"
        return words, "stop"

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        with self.engine.lock:
            self.engine.requests.append(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and not all(isinstance(t, int) for t in prompt):
            return self._each_prompt(body, on_chunk)
        words, finish = self._words(body)
        usage = {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)}
        timings = {"prompt_ms": 1.0, "predicted_ms": 10.0, "predicted_per_second": 100.0}
        if on_chunk is None:
            time.sleep(self.engine.token_delay * len(words))
            key = "text" if "prompt" in body else "message"
            value: Any = "".join(words) if key == "text" else {"role": "assistant", "content": "".join(words)}
            return {
                "choices": [{"index": 0, key: value, "finish_reason": finish}],
                "usage": usage,
                "timings": timings,
                "model": str(self.spec.model_path),
            }
        sent = 0
        for word in words:
            time.sleep(self.engine.token_delay)
            sent += 1
            if on_chunk({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}):
                finish = "cancelled"
                break
        on_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        last = {"choices": [], "usage": {**usage, "completion_tokens": sent}, "timings": timings}
        on_chunk(last)
        return last

    complete = chat

    def _each_prompt(self, body: dict[str, Any], on_chunk: ChunkCallback | None) -> dict[str, Any]:
        """Several prompts at once, as the engine answers them: one choice per prompt, by index."""
        results = [self.chat({**body, "prompt": prompt}, None) for prompt in body["prompt"]]
        choices = [{**r["choices"][0], "index": i} for i, r in enumerate(results)]
        whole = {**results[0], "choices": choices}
        if on_chunk is None:
            return whole
        for choice in choices:
            on_chunk({"choices": [{**choice, "finish_reason": None}]})
            on_chunk({"choices": [{"index": choice["index"], "text": "", "finish_reason": "stop"}]})
        last = {"choices": [], "usage": whole["usage"], "timings": whole["timings"]}
        on_chunk(last)
        return last

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append({"index": i, "embedding": [b / 255 for b in digest[:4]]})
        return {"data": data, "usage": {"prompt_tokens": len(inputs)}}

    def prompt_tokens(self, messages: list[dict[str, Any]], *, continuing: bool) -> list[int]:
        rendered = "".join(f"<{m['role']}>{m.get('content') or ''}" for m in messages) + "<assistant>"
        return ([] if continuing else [BOS]) + self.tokenize(rendered)

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def close(self) -> None:
        self.engine.closed.append(self.spec)


#: The fake tokenizer: one token per byte, and this begin-of-text token.
BOS = 1000


def detokenize(tokens: list[int]) -> str:
    return bytes(t for t in tokens if t < 256).decode(errors="replace")
