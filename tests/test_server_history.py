"""Conversations through the server (a `conversation_id` field or `X-Cove-Conversation` header) and
cove's own `/api/cove/...` history routes, on the fake engine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeEngine
from server_fixtures import LiveServer, anyio_backend, client, make_app, tiny_cove, wait_for, words
from test_server_guard import KEY, assert_ollama_error, assert_openai_error

from cove.chat.service import ChatService
from cove.history import PRICES_AS_OF
from cove.library.local import Cove

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

HEADER = "x-cove-conversation"
CONTEXT = "x-cove-context"


def oai(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], **extra}


def ollama(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], "stream": False, **extra}


def sse(text: str) -> list[Any]:
    events = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


async def stored(c: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    r = await c.get(f"/api/cove/conversations/{cid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def listed(c: httpx.AsyncClient, query: str = "") -> list[dict[str, Any]]:
    r = await c.get("/api/cove/conversations" + query)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["conversations"]
    return found


async def start(c: httpx.AsyncClient, text: str) -> str:
    """A new conversation with one turn, through /api/chat; its id."""
    r = await c.post("/api/chat", json=ollama(text, conversation_id="new"))
    assert r.status_code == 200, r.text
    return r.headers[HEADER]


# -- binding requests to a conversation ---------------------------------------------------------


async def test_requests_without_an_id_store_nothing(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=ollama("hello"))
        assert r.status_code == 200 and HEADER not in r.headers
        r = await c.post("/v1/chat/completions", json=oai("hello"))
        assert r.status_code == 200 and HEADER not in r.headers
        r = await c.post("/v1/chat/completions", json=oai("hello", stream=True))
        assert r.status_code == 200 and HEADER not in r.headers
        r = await c.post("/api/chat", json=ollama("hello", conversation_id="  "))
        assert r.status_code == 200 and HEADER not in r.headers
        assert await listed(c) == []
        stats = (await c.get("/api/cove/stats")).json()
    assert stats["conversations"] == 0 and stats["messages"] == 0


async def test_new_conversation_on_openai_whole(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=oai("hello there", conversation_id="new"))
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "You said: hello there"
        cid = r.headers[HEADER]
        chat = await stored(c, cid)
        (summary,) = await listed(c)
    assert engine.requests[-1]["messages"] == [{"role": "user", "content": "hello there"}]
    assert chat["id"] == cid and chat["model"] == "tiny:latest" and chat["source"] == "api"
    assert chat["title"] == "hello there"
    user, answer = chat["messages"]
    assert (user["role"], user["content"], user["position"]) == ("user", "hello there", 0)
    assert (answer["role"], answer["content"], answer["position"]) == (
        "assistant",
        "You said: hello there",
        1,
    )
    assert answer["prompt_tokens"] == 5 and answer["completion_tokens"] == 4
    assert answer["model"] == "tiny:latest" and answer["in_context"] is True
    assert summary["id"] == cid and summary["messages"] == 2 and summary["preview"] == "hello there"


async def test_new_conversation_on_openai_stream(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/v1/chat/completions", json=oai("stream me please", stream=True, conversation_id="new")
        )
        assert r.status_code == 200, r.text
        events = sse(r.text)
        assert events[-1] == "[DONE]"
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
        assert text == "You said: stream me please"
        cid = r.headers[HEADER]
        chat = await stored(c, cid)
    user, answer = chat["messages"]
    assert (user["role"], user["content"]) == ("user", "stream me please")
    assert (answer["role"], answer["content"]) == ("assistant", "You said: stream me please")
    assert answer["prompt_tokens"] == 5 and answer["completion_tokens"] == 5


async def test_follow_up_on_ollama_sends_the_stored_context(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=oai("my name is Ada", conversation_id="new"))
        cid = r.headers[HEADER]
        # The follow-up names the conversation by header and sends only its new message.
        r = await c.post("/api/chat", json=ollama("what is my name?"), headers={"X-Cove-Conversation": cid})
        assert r.status_code == 200, r.text
        assert r.headers[HEADER] == cid and CONTEXT not in r.headers
        assert r.json()["message"]["content"] == "You said: what is my name?"
        chat = await stored(c, cid)
    assert engine.requests[-1]["messages"] == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "You said: my name is Ada"},
        {"role": "user", "content": "what is my name?"},
    ]
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("user", "my name is Ada"),
        ("assistant", "You said: my name is Ada"),
        ("user", "what is my name?"),
        ("assistant", "You said: what is my name?"),
    ]
    assert [m["position"] for m in chat["messages"]] == [0, 1, 2, 3]
    assert chat["title"] == "my name is Ada"  # the first message names it; later ones do not


async def test_follow_up_after_a_stream_sees_the_streamed_answer(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json={**ollama("first", conversation_id="new"), "stream": True})
        assert r.status_code == 200, r.text
        cid = r.headers[HEADER]
        r = await c.post("/api/chat", json={**ollama("second", conversation_id=cid), "stream": True})
        assert r.status_code == 200, r.text
    assert engine.requests[-1]["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": "second"},
    ]


async def test_a_streamed_answer_is_kept_before_the_stream_ends(
    fake_cove: Cove, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends its next turn the moment a stream ends must find the answer stored."""
    keep = ChatService._record

    def slow_record(*args: Any, **named: Any) -> None:
        time.sleep(0.2)  # a slow disk: widens the window a fire-and-forget write would leave open
        keep(*args, **named)

    monkeypatch.setattr(ChatService, "_record", slow_record)
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=oai("first", stream=True, conversation_id="new"))
        cid = r.headers[HEADER]
        r = await c.post("/api/chat", json={**ollama("second", conversation_id=cid), "stream": True})
        assert r.status_code == 200, r.text
        chat = await stored(c, cid)
    assert engine.requests[-1]["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": "second"},
    ]
    assert [m["content"] for m in chat["messages"]] == [
        "first",
        "You said: first",
        "second",
        "You said: second",
    ]


async def test_a_developer_message_is_the_system_prompt(fake_cove: Cove, engine: FakeEngine) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "conversation_id": "new",
    }
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        chat = await stored(c, r.headers[HEADER])
    assert chat["system"] == "Be brief."
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_a_role_history_cannot_keep_is_refused_before_anything_is_stored(
    fake_cove: Cove, engine: FakeEngine
) -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "function", "name": "f", "content": "{}"}]
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": messages, "conversation_id": "new"}
        )
        assert "'function'" in assert_openai_error(r, 400)
        assert await listed(c) == []
        cid = await start(c, "existing")
        r = await c.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": messages}, headers={HEADER: cid}
        )
        assert_openai_error(r, 400)
        assert len((await stored(c, cid))["messages"]) == 2
    assert len(engine.requests) == 1


async def test_a_system_message_sets_the_system_prompt(fake_cove: Cove, engine: FakeEngine) -> None:
    body = {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "Answer like a pirate."},
            {"role": "user", "content": "hi"},
        ],
        "conversation_id": "new",
    }
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=body)
        cid = r.headers[HEADER]
        await c.post("/api/chat", json=ollama("again", conversation_id=cid))
        chat = await stored(c, cid)
    assert chat["system"] == "Answer like a pirate."
    # The prompt is a setting, not a turn; it leads every context sent to the model.
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user", "assistant"]
    assert engine.requests[-1]["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert engine.requests[-1]["messages"][1] == {"role": "user", "content": "hi"}


async def test_an_unknown_conversation_is_404_in_each_api_shape(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/v1/chat/completions", json=oai("hi", conversation_id="0123456789ab"))
        assert "0123456789ab" in assert_openai_error(r, 404)
        r = await c.post(
            "/v1/chat/completions", json=oai("hi", stream=True), headers={HEADER: "0123456789ab"}
        )
        assert_openai_error(r, 404)
        r = await c.post("/api/chat", json=ollama("hi", conversation_id="0123456789ab"))
        assert_ollama_error(r, 404)
        r = await c.post("/api/chat", json={**ollama("hi"), "stream": True}, headers={HEADER: "nope"})
        assert_ollama_error(r, 404)
        assert await listed(c) == []
    assert engine.requests == []


async def test_a_small_context_is_summarised_and_every_message_kept(
    fake_cove: Cove, engine: FakeEngine
) -> None:
    first, second = "alpha " + words(8, "a"), "omega " + words(8, "b")
    options = {"num_ctx": 64}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=ollama(first, conversation_id="new", options=options))
        assert r.status_code == 200, r.text
        assert CONTEXT not in r.headers
        cid = r.headers[HEADER]
        r = await c.post("/api/chat", json=ollama(second, conversation_id=cid, options=options))
        assert r.status_code == 200, r.text
        notice = r.headers[CONTEXT]
        chat = await stored(c, cid)
    assert "64-token context" in notice and "2 older messages" in notice
    roles = [(m["role"], m["in_context"], m["summary_of"]) for m in chat["messages"]]
    assert roles == [
        ("user", False, None),
        ("assistant", False, None),
        ("user", True, None),
        ("system", True, [0, 1]),
        ("assistant", True, None),
    ]
    contents = [m["content"] for m in chat["messages"]]
    assert contents[0] == first and contents[2] == second and contents[4] == f"You said: {second}"
    # The model got the summary in place of the first turn, then the new message.
    sent = engine.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith(
        "Summary of the earlier conversation"
    )
    assert sent[1:] == [{"role": "user", "content": second}]
    assert all(first != m["content"] for m in sent)


def test_a_stream_cut_short_still_stores_what_arrived(cove_home: Path) -> None:
    engine = FakeEngine(token_delay=0.05)
    cove = tiny_cove(cove_home, engine)
    try:
        with LiveServer(make_app(cove)) as url, httpx.Client(base_url=url, timeout=30) as http:
            body = {**ollama(words(40)), "stream": True, "conversation_id": "new"}
            with http.stream("POST", "/api/chat", json=body) as response:
                assert response.status_code == 200
                cid = response.headers[HEADER]
                first = json.loads(next(line for line in response.iter_lines() if line.strip()))
                assert first["done"] is False
            # Leaving the block closed the connection long before the answer's 42 tokens.

            def answered() -> bool:
                messages = http.get(f"/api/cove/conversations/{cid}").json()["messages"]
                return len(messages) == 2

            wait_for(answered, what="the cut-short answer to be stored")
            user, answer = http.get(f"/api/cove/conversations/{cid}").json()["messages"]
    finally:
        cove.close()
    assert user["content"] == words(40)
    assert answer["role"] == "assistant" and answer["content"].startswith("You")
    assert len(answer["content"]) < len(f"You said: {words(40)}")


# -- the history routes ---------------------------------------------------------------------


async def test_list_get_and_rename(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        older = await start(c, "the older one")
        newer = await start(c, "the newer one")
        await c.post("/api/chat", json=ollama("more", conversation_id=newer))
        found = await listed(c)
        assert [(f["id"], f["messages"], f["title"]) for f in found] == [
            (newer, 4, "the newer one"),
            (older, 2, "the older one"),
        ]
        # Any activity moves a conversation to the top.
        await c.post("/api/chat", json=ollama("back again", conversation_id=older))
        assert [f["id"] for f in await listed(c)] == [older, newer]
        assert [f["id"] for f in await listed(c, "?limit=1&offset=1")] == [newer]

        r = await c.post(f"/api/cove/conversations/{older}/rename", json={"title": "  Renamed\n here "})
        assert r.status_code == 200, r.text
        assert (await stored(c, older))["title"] == "Renamed here"
        # A unique prefix works as an id.
        assert (await stored(c, older[:6]))["id"] == older
        r = await c.post("/api/cove/conversations/0123456789ab/rename", json={"title": "x"})
        assert_ollama_error(r, 404)
        r = await c.post(f"/api/cove/conversations/{older}/rename", json={"name": "x"})
        assert_ollama_error(r, 400)
        assert_ollama_error(await c.get("/api/cove/conversations/0123456789ab"), 404)


async def test_search_returns_a_snippet(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        cid = await start(c, "tell me about the zanzibar archipelago")
        await start(c, "something else entirely")
        r = await c.get("/api/cove/search", params={"q": "zanzibar"})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        none = (await c.get("/api/cove/search", params={"q": "unmentioned"})).json()
    assert {h["conversation_id"] for h in results} == {cid}
    assert {h["role"] for h in results} == {"user", "assistant"}
    user = next(h for h in results if h["role"] == "user")
    assert user["position"] == 0 and user["title"] == "tell me about the zanzibar archipelago"
    assert "[zanzibar]" in user["snippet"]
    assert none == {"results": []}


async def test_export_json_and_markdown(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        cid = await start(c, "export me")
        other = await start(c, "and me too")
        one = await c.get(f"/api/cove/conversations/{cid}/export", params={"format": "json"})
        every = await c.get("/api/cove/export")
        md = await c.get(f"/api/cove/conversations/{cid}/export", params={"format": "md"})
        bad = await c.get("/api/cove/export", params={"format": "pdf"})
        missing = await c.get("/api/cove/conversations/0123456789ab/export")
    assert one.status_code == 200
    doc = one.json()
    assert doc["format"] == "cove.history" and doc["version"] == 1
    (chat,) = doc["conversations"]
    assert chat["id"] == cid and [m["content"] for m in chat["messages"]] == [
        "export me",
        "You said: export me",
    ]
    assert [c["id"] for c in every.json()["conversations"]] == [cid, other]
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# export me\n")
    assert (
        "## User\n\nexport me" in md.text and "## Assistant (tiny:latest)\n\nYou said: export me" in md.text
    )
    assert "and me too" not in md.text
    assert_ollama_error(bad, 400)
    assert_ollama_error(missing, 404)


async def test_import_into_a_fresh_home(fake_cove: Cove, engine: FakeEngine, tmp_path: Path) -> None:
    async with client(make_app(fake_cove)) as c:
        cid = await start(c, "carry me over")
        doc = (await c.get("/api/cove/export")).json()
        original = await stored(c, cid)
    fresh = tiny_cove(tmp_path / "fresh-home", engine)
    try:
        async with client(make_app(fresh)) as c:
            assert await listed(c) == []
            r = await c.post("/api/cove/import", json=doc)
            assert r.status_code == 200, r.text
            assert r.json() == {"imported": 1, "skipped": 0}
            r = await c.post("/api/cove/import", json=doc)
            assert r.json() == {"imported": 0, "skipped": 1}
            copy = await stored(c, cid)
            assert [f["id"] for f in await listed(c)] == [cid]
    finally:
        fresh.close()
    assert copy["messages"] == original["messages"]
    assert copy["title"] == original["title"] and copy["model"] == original["model"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"format": "cove.history", "version": 99, "conversations": []}',
        b'{"format": "cove.history", "version": 1, "conversations": [{"id": "x"}]}',
    ],
    ids=["not-json", "unknown-shape", "future-version", "missing-fields"],
)
async def test_a_malformed_import_is_400_and_imports_nothing(fake_cove: Cove, body: bytes) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/cove/import", content=body, headers={"content-type": "application/json"})
        assert_ollama_error(r, 400)
        assert await listed(c) == []


async def test_an_import_with_one_bad_conversation_imports_none(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        cid = await start(c, "good one")
        doc = (await c.get("/api/cove/export")).json()
        good = {**doc["conversations"][0], "id": "aaaaaaaaaaaa", "external_id": None}
        broken = {**good, "id": "bbbbbbbbbbbb", "messages": [{"role": "user"}]}
        r = await c.post("/api/cove/import", json={**doc, "conversations": [good, broken]})
        assert_ollama_error(r, 400)
        assert [f["id"] for f in await listed(c)] == [cid]


async def test_delete_one_and_delete_all(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        gone = await start(c, "delete me")
        kept = await start(c, "keep me for now")
        r = await c.delete(f"/api/cove/conversations/{gone}")
        assert r.status_code == 200, r.text
        assert_ollama_error(await c.get(f"/api/cove/conversations/{gone}"), 404)
        assert_ollama_error(await c.delete(f"/api/cove/conversations/{gone}"), 404)
        # A deleted conversation is gone from search too.
        assert (await c.get("/api/cove/search", params={"q": "delete"})).json() == {"results": []}
        assert [f["id"] for f in await listed(c)] == [kept]

        for body in (
            {},
            {"all": False},
            {"all": "yes"},
            {"all": 1},
            {"all": "true"},
            {"all": True, "extra": 1},
        ):
            r = await c.request("DELETE", "/api/cove/conversations", json=body)
            assert_ollama_error(r, 400)
        assert_ollama_error(await c.request("DELETE", "/api/cove/conversations"), 400)
        assert [f["id"] for f in await listed(c)] == [kept]

        r = await c.request("DELETE", "/api/cove/conversations", json={"all": True})
        assert r.status_code == 200 and r.json() == {"deleted": 1}
        assert await listed(c) == []
        assert (await c.get("/api/cove/search", params={"q": "keep"})).json() == {"results": []}


async def test_personas(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        assert (await c.get("/api/cove/personas")).json() == {"personas": []}
        r = await c.post("/api/cove/personas", json={"name": "tutor", "system": "Explain simply."})
        assert r.status_code == 200 and r.json() == {"name": "tutor", "system": "Explain simply."}
        await c.post("/api/cove/personas", json={"name": "critic", "system": "Find faults."})
        # Saving an existing name changes its prompt.
        await c.post("/api/cove/personas", json={"name": "tutor", "system": "Explain very simply."})
        assert (await c.get("/api/cove/personas")).json() == {
            "personas": [
                {"name": "critic", "system": "Find faults."},
                {"name": "tutor", "system": "Explain very simply."},
            ]
        }
        assert_ollama_error(await c.post("/api/cove/personas", json={"name": "", "system": "x"}), 400)
        assert_ollama_error(await c.post("/api/cove/personas", json={"name": "x"}), 400)
        assert (await c.delete("/api/cove/personas/tutor")).status_code == 200
        assert_ollama_error(await c.delete("/api/cove/personas/tutor"), 404)
        assert_ollama_error(await c.delete("/api/cove/personas/nobody"), 404)
        assert (await c.get("/api/cove/personas")).json() == {
            "personas": [{"name": "critic", "system": "Find faults."}]
        }


async def test_stats(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        await start(c, "one two")  # answer "You said: one two": 4 tokens
        await start(c, "three")  # answer "You said: three": 3 tokens
        r = await c.get("/api/cove/stats")
        recent = await c.get("/api/cove/stats", params={"days": 7})
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["conversations"] == 2 and stats["messages"] == 4
    assert stats["tokens_in"] == 10 and stats["tokens_out"] == 7
    usage = stats["by_model"]["tiny:latest"]
    assert usage["answers"] == 2 and usage["tokens_in"] == 10 and usage["tokens_out"] == 7
    assert usage["avg_tokens_per_s"] == pytest.approx(100.0)
    assert stats["prices_as_of"] == PRICES_AS_OF
    assert stats["cloud_cost_usd"]["gpt-4o"] == pytest.approx((10 * 2.5 + 7 * 10.0) / 1_000_000)
    assert recent.json()["conversations"] == 2


async def test_stats_use_the_home_price_table(fake_cove: Cove) -> None:
    prices = {"as_of": "2030-01-01", "models": {"big": {"input": 1_000_000, "output": 0}}}
    (fake_cove.settings.home / "prices.json").write_text(json.dumps(prices), "utf-8")
    async with client(make_app(fake_cove)) as c:
        await start(c, "hi")
        stats = (await c.get("/api/cove/stats")).json()
    assert stats["prices_as_of"] == "2030-01-01"
    assert stats["cloud_cost_usd"] == {"big": pytest.approx(5.0)}


@pytest.mark.parametrize(
    "path",
    [
        "/api/cove/conversations?limit=-1",
        "/api/cove/conversations?limit=x",
        "/api/cove/conversations?limit=1001",
        "/api/cove/conversations?offset=-5",
        "/api/cove/search",
        "/api/cove/search?q=",
        "/api/cove/search?q=%20%20",
        "/api/cove/search?q=word&limit=x",
        "/api/cove/stats?days=x",
        "/api/cove/stats?days=-1",
    ],
)
async def test_invalid_query_parameters_are_400(fake_cove: Cove, path: str) -> None:
    async with client(make_app(fake_cove)) as c:
        assert_ollama_error(await c.get(path), 400)


# -- the guard covers these routes too -----------------------------------------------------------


async def test_a_cross_origin_delete_is_refused(fake_cove: Cove) -> None:
    evil = {"Origin": "http://evil.example"}
    async with client(make_app(fake_cove)) as c:
        cid = await start(c, "precious")
        r = await c.delete(f"/api/cove/conversations/{cid}", headers=evil)
        assert_ollama_error(r, 403)
        r = await c.request("DELETE", "/api/cove/conversations", json={"all": True}, headers=evil)
        assert_ollama_error(r, 403)
        assert_ollama_error(await c.get("/api/cove/export", headers=evil), 403)
        assert [f["id"] for f in await listed(c)] == [cid]
        assert len((await stored(c, cid))["messages"]) == 2
    # A page the user listed in COVE_ORIGINS may still use them.
    async with client(make_app(fake_cove, extra_origins=("http://localhost:3000",))) as c:
        local = {"Origin": "http://localhost:3000"}
        r = await c.delete(f"/api/cove/conversations/{cid}", headers=local)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert await listed(c) == []


async def test_with_an_api_key_the_history_needs_it(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove, api_keys=(KEY,))) as c:
        authed = {"Authorization": f"Bearer {KEY}"}
        r = await c.post("/api/chat", json=ollama("secret", conversation_id="new"), headers=authed)
        cid = r.headers[HEADER]
        for method, path in [
            ("GET", "/api/cove/conversations"),
            ("GET", f"/api/cove/conversations/{cid}"),
            ("GET", "/api/cove/export"),
            ("GET", "/api/cove/search?q=secret"),
            ("GET", "/api/cove/stats"),
            ("GET", "/api/cove/personas"),
            ("DELETE", f"/api/cove/conversations/{cid}"),
        ]:
            r = await c.request(method, path)
            assert_ollama_error(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
            r = await c.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert_ollama_error(r, 401)
        assert_ollama_error(await c.post("/api/cove/import", json={}), 401)
        r = await c.get("/api/cove/conversations", headers=authed)
        assert [f["id"] for f in r.json()["conversations"]] == [cid]
        r = await c.get("/api/cove/conversations", headers={"X-Api-Key": KEY})
        assert [f["id"] for f in r.json()["conversations"]] == [cid]
