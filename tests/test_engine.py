"""Tests for the llama.cpp engine on the real bundled gemma3:270m, plus its error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import load_gemma

from cove.config import Settings
from cove.engine.llamacpp import LlamaCppModel, engine_client, raise_engine_error
from cove.errors import BadRequest, EngineError
from cove.library.local import Cove

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def gemma(model_home: Path) -> Iterator[LlamaCppModel]:
    """One loaded engine for the module: loading is the slow part."""
    model = load_gemma(model_home, num_ctx=256)
    yield model
    model.close()


def greedy(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"messages": HELLO, "max_tokens": max_tokens, "temperature": 0, **extra}


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                texts.append(text)
    return texts


@pytest.mark.model
def test_greedy_chat_is_deterministic(gemma: LlamaCppModel) -> None:
    first = gemma.chat(greedy(8))
    second = gemma.chat(greedy(8))
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert 0 < first["usage"]["completion_tokens"] <= 8
    assert first["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.model
def test_streaming_matches_and_can_stop(gemma: LlamaCppModel) -> None:
    whole = gemma.chat(greedy(8))["choices"][0]["message"]["content"]
    streamed: list[dict[str, Any]] = []

    def keep_going(chunk: dict[str, Any]) -> bool:
        streamed.append(chunk)
        return False

    gemma.chat(greedy(8, stream=True), keep_going)
    assert "".join(content_of(streamed)) == whole

    seen: list[dict[str, Any]] = []

    def stop_after_two(chunk: dict[str, Any]) -> bool:
        seen.append(chunk)
        return len(content_of(seen)) >= 2

    gemma.chat(greedy(16, stream=True), stop_after_two)
    assert 2 <= len(content_of(seen)) < 16


@pytest.mark.model
def test_completion(gemma: LlamaCppModel) -> None:
    result = gemma.complete({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})
    assert isinstance(result["choices"][0]["text"], str)
    assert 0 < result["usage"]["completion_tokens"] <= 4


@pytest.mark.model
def test_engine_listener_needs_the_secret(gemma: LlamaCppModel) -> None:
    assert gemma.address.startswith("unix://")  # a socket file in a private folder, not a port
    with engine_client(gemma.address, "guess", timeout=10) as client:
        assert client.get("/v1/models").status_code == 401
        posted = client.post("/v1/chat/completions", json=greedy(1))
        assert posted.status_code == 401
        bare = client.get("/v1/models", headers={"Authorization": ""})
        assert bare.status_code == 401


@pytest.mark.model
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": "not a list"}, "messages"),
        ({"messages": HELLO, "max_tokens": "lots"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "word " * 2000}], "max_tokens": 1}, "context"),
    ],
)
def test_bad_request_from_engine(gemma: LlamaCppModel, body: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        gemma.chat(body)
    assert gemma.chat(greedy(1))["usage"]["completion_tokens"] == 1  # still serving


@pytest.mark.model
def test_cove_chat_on_the_real_model(real_home: Path) -> None:
    settings = replace(Settings.from_env(), home=real_home, num_parallel=1)
    with Cove(settings) as cove:
        answer = cove.chat("gemma3:270m", HELLO, options={"temperature": 0, "num_predict": 8})
        again = cove.chat("gemma3:270m", HELLO, options={"temperature": 0, "num_predict": 8})
        assert answer.content == again.content
        assert 0 < answer.completion_tokens <= 8
        chunks = list(cove.stream_chat("gemma3:270m", HELLO, options={"temperature": 0, "num_predict": 8}))
        assert "".join(c.content for c in chunks) == answer.content
        assert chunks[-1].done and chunks[-1].completion_tokens == answer.completion_tokens


# -- error mapping (no model needed) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"error": {"message": "bad field", "code": 400, "type": "invalid_request_error"}}, BadRequest),
        ({"error": {"message": "too long", "code": 413}}, BadRequest),
        ({"error": {"message": "crashed", "code": 500}}, EngineError),
        ({"error": {"message": "odd code", "code": "x"}}, EngineError),
        ({"error": "plain text"}, EngineError),
        ({"error": {"code": 503}}, EngineError),
    ],
)
def test_raise_engine_error(result: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        raise_engine_error(result)
    assert type(info.value) is error
    message = result["error"] if isinstance(result["error"], str) else result["error"].get("message")
    assert str(info.value) == (message or "engine error")
