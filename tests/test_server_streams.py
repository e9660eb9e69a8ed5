"""Answer shapes on the fake engine: Ollama NDJSON and whole answers, OpenAI SSE and whole answers."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import BOS, FakeEngine, FakeModel, detokenize
from server_fixtures import add_embedder, anyio_backend, client, make_app, tiny_cove

from cove.engine.base import ChunkCallback, LoadSpec
from cove.library.local import Cove

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

STATS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def sse(text: str) -> list[Any]:
    """The events of an SSE body; `[DONE]` stays a string."""
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def check_stream_lines(
    chunks: list[dict[str, Any]], field: str, text: str, model: str = "tiny", prompt_tokens: int = 5
) -> dict[str, Any]:
    *parts, last = chunks
    assert parts and all(p["done"] is False for p in parts)
    for part in chunks:
        assert part["model"] == model
        datetime.fromisoformat(part["created_at"].replace("Z", "+00:00"))
    if field == "message":
        assert all(p["message"]["role"] == "assistant" for p in chunks)
        pieces = [p["message"]["content"] for p in parts]
        assert last["message"] == {"role": "assistant", "content": ""}
    else:
        pieces = [p["response"] for p in parts]
        assert last["response"] == ""
    assert "".join(pieces) == text
    assert last["done"] is True
    assert set(last) >= STATS | {"done_reason"}
    assert last["eval_count"] == len(pieces)
    assert last["prompt_eval_count"] == prompt_tokens
    assert all(isinstance(last[k], int) and last[k] >= 0 for k in STATS)
    return last


async def test_ollama_chat_stream(fake_cove: Cove) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello there friend"}]}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    last = check_stream_lines(ndjson(r.text), "message", "You said: hello there friend")
    assert last["done_reason"] == "stop"
    assert last["eval_count"] == 5


async def test_ollama_chat_stream_cut_by_num_predict(fake_cove: Cove) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "one two three four"}],
        "options": {"num_predict": 3},
    }
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=body)
    last = check_stream_lines(ndjson(r.text), "message", "You said: one ")
    assert last["done_reason"] == "length"


async def test_ollama_chat_whole(fake_cove: Cove) -> None:
    body = {"model": "tiny:latest", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=body)
    answer = r.json()
    assert r.headers["content-type"] == "application/json"
    assert answer["model"] == "tiny:latest"
    assert answer["message"] == {"role": "assistant", "content": "You said: hi"}
    assert answer["done"] is True and answer["done_reason"] == "stop"
    assert answer["eval_count"] == 3 and answer["prompt_eval_count"] == 5
    assert set(answer) >= STATS


async def test_ollama_generate_stream_and_whole(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        streamed = await c.post(
            "/api/generate", json={"model": "tiny", "prompt": "tell me", "system": "Be kind."}
        )
        whole = await c.post("/api/generate", json={"model": "tiny", "prompt": "tell me", "stream": False})
        raw = await c.post(
            "/api/generate", json={"model": "tiny", "prompt": "Once", "raw": True, "stream": False}
        )
    # A templated generate runs as a completion of the templated prompt's tokens (so that its
    # `context` can be given back); the fake engine continues it with "after: <what it read>".
    templated = "<system>Be kind.<user>tell me<assistant>"
    last = check_stream_lines(ndjson(streamed.text), "response", f"after: {templated}")
    assert last["done_reason"] == "stop"
    first = engine.requests[0]["prompt"]
    assert first[0] == BOS and detokenize(first) == templated
    body = whole.json()
    assert body["response"] == "after: <user>tell me<assistant>" and body["done"] is True
    assert set(body) >= STATS | {"done_reason", "model", "created_at"}
    assert raw.json()["response"] == "after: Once"
    assert engine.requests[-1]["prompt"] == "Once"


async def test_ollama_format_and_tools_reach_the_engine(fake_cove: Cove, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    messages = [
        {"role": "user", "content": "add 1 and 2"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "3", "tool_name": "add"},
        {"role": "user", "content": "thanks"},
    ]
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/api/chat", json={"model": "tiny", "messages": messages, "format": schema, "tools": [tool]}
        )
        assert r.status_code == 200
        r = await c.post(
            "/api/generate", json={"model": "tiny", "prompt": "x", "format": "json", "stream": False}
        )
        assert r.status_code == 200
    chat, generate = engine.requests
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert chat["tools"] == [tool]
    call = chat["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a": 1}'}
    assert chat["messages"][2]["role"] == "tool" and chat["messages"][2]["name"] == "add"
    # A completion takes its output format as a JSON schema.
    assert generate["json_schema"] == {"type": "object"} and "response_format" not in generate


# -- OpenAI --------------------------------------------------------------------------------------

OAI = {"model": "tiny", "messages": [{"role": "user", "content": "stream me please"}]}


async def test_openai_chat_whole(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json={**OAI, "max_completion_tokens": 4, "temperature": 0})
    body = r.json()
    assert body["model"] == "tiny"
    assert "timings" not in body
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "You said: stream me "}
    assert choice["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert engine.requests[0]["max_tokens"] == 4 and engine.requests[0]["temperature"] == 0


async def test_openai_chat_stream(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json={**OAI, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(isinstance(e, dict) for e in chunks)
    assert all("usage" not in e for e in chunks)
    assert all(e["model"] == "tiny" and "timings" not in e for e in chunks)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in chunks)
    assert text == "You said: stream me please"
    assert [e["choices"][0]["finish_reason"] for e in chunks][-1] == "stop"
    assert str(fake_cove.settings.home) not in r.text


async def test_openai_chat_stream_with_usage(fake_cove: Cove) -> None:
    body = {**OAI, "stream": True, "stream_options": {"include_usage": True}}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=body)
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    usage = [e for e in events[:-1] if e.get("usage")]
    assert usage == [events[-2]]
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] == 5
    assert events[-2]["usage"]["prompt_tokens"] == 5


async def test_openai_completions(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        whole = await c.post(
            "/v1/completions", json={"model": "tiny", "prompt": ["Once ", "upon"], "max_tokens": 8}
        )
        streamed = await c.post(
            "/v1/completions",
            json={
                "model": "tiny",
                "prompt": "Once upon",
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    # A list of prompts gets one choice each, in order, as OpenAI's API answers it.
    choices = whole.json()["choices"]
    assert [(c["index"], c["text"]) for c in choices] == [(0, "after: Once "), (1, "after: upon")]
    assert whole.json()["id"].startswith("cmpl-") and whole.json()["object"] == "text_completion"
    assert engine.requests[0]["prompt"] == ["Once ", "upon"]
    events = sse(streamed.text)
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] == 3


async def test_openai_models(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        listing = (await c.get("/v1/models")).json()
        one = await c.get("/v1/models/tiny:latest")
        short = await c.get("/v1/models/tiny")
    assert listing["object"] == "list"
    (model,) = listing["data"]
    assert model["id"] == "tiny:latest" and model["object"] == "model" and model["owned_by"] == "cove"
    assert isinstance(model["created"], int) and model["created"] > 1_600_000_000
    assert one.json() == model
    assert short.json()["id"] == "tiny:latest"


async def test_openai_embeddings(fake_cove: Cove) -> None:
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        floats = (await c.post("/v1/embeddings", json={"model": "embedder", "input": ["a", "b"]})).json()
        packed = (
            await c.post(
                "/v1/embeddings", json={"model": "embedder", "input": ["a", "b"], "encoding_format": "base64"}
            )
        ).json()
    assert floats["object"] == "list" and floats["model"] == "embedder"
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    for plain, encoded in zip(floats["data"], packed["data"], strict=True):
        raw = base64.b64decode(encoded["embedding"])
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert values == pytest.approx(plain["embedding"], rel=1e-6)


class _CompletionStyleModel(FakeModel):
    """Streams completions as llama.cpp does: `text` pieces, usage on the last chunk beside them."""

    def complete(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if on_chunk is None:
            return super().complete(body, None)
        pieces = [",", " and", " then"]
        for piece in pieces:
            on_chunk(
                {"choices": [{"index": 0, "text": piece, "finish_reason": None}], "object": "text_completion"}
            )
        usage = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
        last = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage, "id": "c1"}
        on_chunk(last)
        return last


class _CompletionStyleEngine(FakeEngine):
    def __call__(self, spec: LoadSpec) -> FakeModel:
        return _CompletionStyleModel(self, spec)


@pytest.fixture
def completion_cove(cove_home: Path) -> Iterator[Cove]:
    cove = tiny_cove(cove_home, _CompletionStyleEngine())
    yield cove
    cove.close()


async def test_raw_generate_stream_ends_with_done(completion_cove: Cove) -> None:
    body = {"model": "tiny", "prompt": "Once", "raw": True}
    async with client(make_app(completion_cove)) as c:
        r = await c.post("/api/generate", json=body)
    last = check_stream_lines(ndjson(r.text), "response", ", and then", prompt_tokens=2)
    assert last["done_reason"] == "length"


async def test_completion_stream_usage_comes_alone_and_only_when_asked(completion_cove: Cove) -> None:
    body = {"model": "tiny", "prompt": "Once", "stream": True}
    async with client(make_app(completion_cove)) as c:
        plain = sse((await c.post("/v1/completions", json=body)).text)
        asked = sse(
            (await c.post("/v1/completions", json={**body, "stream_options": {"include_usage": True}})).text
        )
    assert plain[-1] == "[DONE]"
    assert all("usage" not in e for e in plain[:-1])
    assert "".join(e["choices"][0]["text"] for e in plain[:-1]) == ", and then"
    assert plain[-2]["choices"][0]["finish_reason"] == "length"

    def unnamed(events: list[Any]) -> list[Any]:
        return [{k: v for k, v in e.items() if k not in ("id", "created")} for e in events]

    assert unnamed(asked[:-2]) == unnamed(plain[:-1])
    assert len({e["id"] for e in asked[:-1]}) == 1  # one answer, one id
    assert asked[-2]["choices"] == [] and asked[-2]["model"] == "tiny"
    assert asked[-2]["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
