"""The `collections` field from the clients people own, against a real `cove serve` on the bundled
model: the official `openai` package (extra_body) and the `ollama` package. The collection is
made through the server's own /api/cove/kb and embedded by the bundled model in cove's engine."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from ollama._types import ChatResponse
from server_fixtures import RealServer, _real_servers

__all__ = ["_real_servers"]
pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
TIMEOUT = 180
REFUND = "Refunds are paid within 30 days of a written request to the landlord."
ASK = [{"role": "user", "content": "How fast are refunds paid?"}]


@pytest.fixture(scope="module")
def server(_real_servers: Callable[..., RealServer]) -> RealServer:
    return _real_servers()


@pytest.fixture(scope="module")
def collection(server: RealServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A collection of one lease, embedded by the bundled model (any model embeds in cove)."""
    folder = tmp_path_factory.mktemp("kb-docs")
    (folder / "lease.md").write_text(f"# Lease\n\n## Refunds\n\n{REFUND}\n", encoding="utf-8")
    name = f"clients-{secrets.token_hex(3)}"
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        assert http.post("/api/cove/kb", json={"name": name, "model": MODEL}).status_code == 201
        assert http.post(f"/api/cove/kb/{name}/paths", json={"paths": [str(folder)]}).status_code == 200
        synced = http.post(f"/api/cove/kb/{name}/sync", json={"stream": False})
        assert synced.status_code == 200, synced.text
        assert synced.json()["report"]["added"] == ["lease.md"]
    return name


def first_citation(citations: list[dict[str, Any]]) -> tuple[Any, ...]:
    best = citations[0]
    return best["n"], best["file"], REFUND in best["text"]


def test_openai_package_with_collections(server: RealServer, collection: str) -> None:
    api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
    extra = {"collections": [collection]}
    whole = api.chat.completions.create(
        model=MODEL,
        messages=ASK,
        temperature=0,
        max_tokens=16,
        extra_body=extra,  # type: ignore[arg-type]
    )
    assert whole.choices[0].message.content
    assert first_citation((whole.model_extra or {})["citations"]) == (1, "lease.md", True)
    chunks = list(
        api.chat.completions.create(
            model=MODEL,
            messages=ASK,
            temperature=0,
            max_tokens=16,
            stream=True,
            extra_body=extra,  # type: ignore[arg-type]
        )
    )
    last = chunks[-1].model_extra or {}
    assert chunks[-1].choices == [] and first_citation(last["citations"]) == (1, "lease.md", True)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == whole.choices[0].message.content
    )
    with pytest.raises(openai.NotFoundError, match="no collection"):
        api.chat.completions.create(model=MODEL, messages=ASK, extra_body={"collections": ["nope-none"]})  # type: ignore[arg-type]


def test_ollama_package_with_collections(server: RealServer, collection: str) -> None:
    """The ollama package's chat() has no place for cove's fields, so its own request call sends
    them; its ChatResponse keeps only Ollama's fields (the citations are in the raw line)."""
    client = ollama.Client(host=server.url, timeout=TIMEOUT)
    body = {
        "model": MODEL,
        "messages": ASK,
        "options": {"temperature": 0, "num_predict": 16},
        "collections": [collection],
    }
    whole = client._request(ChatResponse, "POST", "/api/chat", json={**body, "stream": False}, stream=False)
    assert whole.done and whole.message.content
    parts = list(
        client._request(ChatResponse, "POST", "/api/chat", json={**body, "stream": True}, stream=True)
    )
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    with pytest.raises(ollama.ResponseError) as missing:
        client._request(
            ChatResponse, "POST", "/api/chat", json={**body, "collections": ["nope-none"]}, stream=False
        )
    assert missing.value.status_code == 404 and "no collection" in str(missing.value)
    raw = httpx.post(server.url + "/api/chat", json={**body, "stream": False}, timeout=TIMEOUT).json()
    assert raw["message"]["content"] == whole.message.content
    assert first_citation(raw["citations"]) == (1, "lease.md", True)


def test_the_openai_package_s_conversation_remembers_its_collections(
    server: RealServer, collection: str
) -> None:
    """A stored conversation (cove's `conversation_id`) named the collection once; the next turn,
    sent by the official client without it, still cites it; its original file opens."""
    api = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
    first = api.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=ASK,
        temperature=0,
        max_tokens=8,
        extra_body={"collections": [collection], "conversation_id": "new"},  # type: ignore[arg-type]
    )
    cid = first.headers["x-cove-conversation"]
    again = api.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "And are refunds paid within 30 days?"}],
        temperature=0,
        max_tokens=8,
        extra_body={"conversation_id": cid},  # type: ignore[arg-type]
    )
    assert first_citation((again.model_extra or {})["citations"]) == (1, "lease.md", True)
    shown = httpx.get(f"{server.url}/api/cove/conversations/{cid}", timeout=TIMEOUT).json()
    assert shown["collections"] == [collection]
    original = httpx.get(f"{server.url}/api/cove/kb/{collection}/file", params={"file": "lease.md"})
    assert original.status_code == 200 and REFUND in original.text
    assert original.headers["content-type"] == "text/plain; charset=utf-8"
