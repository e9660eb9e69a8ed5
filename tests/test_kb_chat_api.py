"""`collections` and `cove_strict` on /api/chat, /v1/chat/completions and /v1/responses: the
citations in the answer (whole, and in the last chunk of a stream), and a 404 for a collection
that does not exist. On the fake engine and a fake knowledge base; test_kb_chat_clients.py has
the real clients against a real `cove serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine
from kb_fakes import FakeKnowledge
from server_fixtures import client, make_app, tiny_cove

from cove.library.local import Cove

pytestmark = pytest.mark.anyio
REFUND = "Refunds are paid within 30 days of a written request."
ASK = [{"role": "user", "content": "How fast are refunds paid?"}]
OPTIONS = {"num_ctx": 4096}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def cove(cove_home: Path, engine: FakeEngine) -> Iterator[Cove]:
    cove = tiny_cove(cove_home, engine)
    kb = FakeKnowledge()
    kb.add("contracts", "lease.pdf", "Parties: Ann and Bob.", REFUND)
    cove.conversations.knowledge_base = kb
    yield cove
    cove.close()


def cited(citations: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(c["n"], c["file"], c["page"], c["text"]) for c in citations]


EXPECTED = [(1, "lease.pdf", 2, REFUND)]


async def test_ollama_chat_answers_with_citations(cove: Cove, engine: FakeEngine) -> None:
    body = {"model": "tiny", "messages": ASK, "options": OPTIONS, "collections": ["contracts"]}
    async with client(make_app(cove)) as http:
        whole = (await http.post("/api/chat", json={**body, "stream": False})).json()
        lines = [json.loads(x) for x in (await http.post("/api/chat", json=body)).text.splitlines()]
        plain = (await http.post("/api/chat", json={**body, "collections": None, "stream": False})).json()
    assert cited(whole["citations"]) == EXPECTED
    assert set(whole["citations"][0]) >= {"n", "file", "page", "heading", "text", "score"}
    # heading as `cove kb search --json` gives it; the path itself beside it
    assert whole["citations"][0]["heading"] == "Terms" and whole["citations"][0]["heading_path"] == ["Terms"]
    assert lines[-1]["done"] and cited(lines[-1]["citations"]) == EXPECTED
    assert not any("citations" in x for x in lines[:-1])
    assert "citations" not in plain  # a request without collections answers as before
    assert REFUND in engine.requests[0]["messages"][-1]["content"]


async def test_a_reopened_conversation_shows_its_answers_citations(cove: Cove) -> None:
    body = {"model": "tiny", "messages": ASK, "options": OPTIONS, "collections": ["contracts"]}
    async with client(make_app(cove)) as http:
        r = await http.post("/api/chat", json={**body, "stream": False, "conversation_id": "new"})
        cid = r.headers["x-cove-conversation"]
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()["messages"]
    question, answer = shown
    assert "citations" not in question and cited(answer["citations"]) == EXPECTED


async def test_openai_chat_answers_with_citations(cove: Cove) -> None:
    body = {"model": "tiny", "messages": ASK, "num_ctx": 4096, "collections": ["contracts"]}
    async with client(make_app(cove)) as http:
        whole = (await http.post("/v1/chat/completions", json=body)).json()
        stream = await http.post("/v1/chat/completions", json={**body, "stream": True})
        usage = await http.post(
            "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert cited(whole["citations"]) == EXPECTED
    chunks = [json.loads(x[6:]) for x in stream.text.split("\n\n") if x.startswith("data: {")]
    assert chunks[-1]["choices"] == [] and cited(chunks[-1]["citations"]) == EXPECTED
    with_usage = [json.loads(x[6:]) for x in usage.text.split("\n\n") if x.startswith("data: {")]
    assert "usage" in with_usage[-1] and cited(with_usage[-1]["citations"]) == EXPECTED
    assert stream.text.endswith("data: [DONE]\n\n")


async def test_responses_answers_with_citations(cove: Cove) -> None:
    body = {
        "model": "tiny",
        "input": "How fast are refunds paid?",
        "collections": ["contracts"],
        "store": False,
    }
    async with client(make_app(cove)) as http:
        whole = (await http.post("/v1/responses", json=body)).json()
    assert cited(whole["citations"]) == EXPECTED


async def test_an_unknown_collection_is_a_clear_404(cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(cove)) as http:
        api = await http.post("/api/chat", json={"model": "tiny", "messages": ASK, "collections": ["nope"]})
        v1 = await http.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "collections": ["nope"]}
        )
    assert api.status_code == 404 and "nope" in api.json()["error"]
    assert v1.status_code == 404 and "nope" in v1.json()["error"]["message"]
    assert engine.requests == []


async def test_strict_with_nothing_relevant_is_cove_saying_so(cove: Cove, engine: FakeEngine) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Who won the match?"}],
        "collections": ["contracts"],
        "cove_strict": True,
        "stream": False,
    }
    async with client(make_app(cove)) as http:
        api = (await http.post("/api/chat", json=body)).json()
        v1 = (await http.post("/v1/chat/completions", json=body)).json()
    assert "contain nothing relevant" in api["message"]["content"] and api["citations"] == []
    assert "contain nothing relevant" in v1["choices"][0]["message"]["content"] and v1["citations"] == []
    assert engine.requests == []


async def test_collections_are_checked(cove: Cove) -> None:
    async with client(make_app(cove)) as http:
        empty = await http.post("/api/chat", json={"model": "tiny", "messages": ASK, "collections": [""]})
        wrong = await http.post(
            "/api/chat", json={"model": "tiny", "messages": ASK, "collections": "contracts"}
        )
    assert empty.status_code == 400 and wrong.status_code == 400


async def test_the_web_page_loads_no_external_image(cove: Cove) -> None:
    """BAD-INPUTS 25: an answer that repeats a document's ![](https://x/?q=…) loads nothing: the
    page's content security policy allows images from cove itself (and data: URLs) only."""
    async with client(make_app(cove)) as http:
        page = await http.get("/", headers={"accept": "text/html"})
    policy = {d.split()[0]: d.split()[1:] for d in page.headers["content-security-policy"].split("; ") if d}
    assert policy["img-src"] == ["'self'", "data:"] and policy["default-src"] == ["'none'"]


async def test_a_responses_stream_ends_with_the_citations(cove: Cove) -> None:
    body = {
        "model": "tiny",
        "input": "How fast are refunds paid?",
        "collections": ["contracts"],
        "stream": True,
    }
    async with client(make_app(cove)) as http:
        text = (await http.post("/v1/responses", json={**body, "store": False})).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert "citations" not in events[0]["response"]  # response.created: nothing answered yet
    assert (
        events[-1]["type"] == "response.completed" and cited(events[-1]["response"]["citations"]) == EXPECTED
    )
