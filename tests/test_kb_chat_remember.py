"""A conversation remembers the collections it answers from: a turn that names them (and strict)
keeps them with the conversation, a later turn that names none goes on with them, an empty list
turns them off; GET /api/cove/conversations/{id} carries them, `cove run --resume` picks them up
(in-process and through a running server), and a refused turn changes nothing. Also: through
`RemoteCove`, an unknown collection's 404 arrives as CollectionNotFound, not ModelNotFound."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import feed, run_main
from fakes import FakeEngine
from kb_fakes import FakeKnowledge
from server_fixtures import LiveServer, client, make_app, tiny_cove
from test_kb_chat_cli import _workdir, door

from cove.chat.service import TurnRequest
from cove.config import Settings
from cove.errors import ModelNotFound
from cove.history import ConversationNotFound, History, db_path
from cove.history import chosen as kept_choice
from cove.knowledge.errors import CollectionNotFound
from cove.library.kb_remote import KB_ERRORS, RemoteKnowledge
from cove.library.local import Cove
from cove.library.remote import RemoteCove, raise_for

__all__ = ["_workdir", "door"]
pytestmark = pytest.mark.anyio
REFUND = "Refunds are paid within 30 days of a written request."
OPTIONS = {"num_ctx": 4096}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def cove(cove_home: Path, engine: FakeEngine) -> Iterator[Cove]:
    cove = tiny_cove(cove_home, engine)
    kb = FakeKnowledge()
    kb.add("contracts", "lease.pdf", "Parties: Ann and Bob.", REFUND)
    kb.add("notes", "fruit.txt", "Bananas are yellow.")
    cove.conversations.knowledge_base = kb
    yield cove
    cove.close()


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], "options": OPTIONS,
            "stream": False, **extra}  # fmt: skip


async def test_a_later_turn_answers_from_the_collections_the_conversation_chose(
    cove: Cove, engine: FakeEngine
) -> None:
    async with client(make_app(cove)) as http:
        first = await http.post(
            "/api/chat",
            json=ask("How fast are refunds paid?", conversation_id="new", collections=["contracts"]),
        )
        cid = first.headers["x-cove-conversation"]
        assert first.json()["citations"][0]["file"] == "lease.pdf"
        later = (
            await http.post("/api/chat", json=ask("And refunds by transfer?", conversation_id=cid))
        ).json()
        assert [c["file"] for c in later["citations"]] == ["lease.pdf"]
        assert REFUND in engine.requests[-1]["messages"][-1]["content"]
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()
        assert (shown["collections"], shown["strict"]) == (["contracts"], False)
        # The OpenAI door goes through the same service: it remembers too.
        openai = await http.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "refunds paid?"}],
                  "conversation_id": cid, "num_ctx": 4096},
        )  # fmt: skip
        assert openai.status_code == 200 and openai.json()["citations"][0]["file"] == "lease.pdf"
        off = (await http.post("/api/chat", json=ask("refunds?", conversation_id=cid, collections=[]))).json()
        assert "citations" not in off
        after = (await http.post("/api/chat", json=ask("refunds paid?", conversation_id=cid))).json()
        assert "citations" not in after and REFUND not in engine.requests[-1]["messages"][-1]["content"]
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()
        assert (shown["collections"], shown["strict"]) == ([], False)


async def test_strict_is_remembered_with_the_collections(cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(cove)) as http:
        first = await http.post(
            "/api/chat",
            json=ask(
                "who won the match?", conversation_id="new", collections=["contracts"], cove_strict=True
            ),
        )
        cid = first.headers["x-cove-conversation"]
        later = (await http.post("/api/chat", json=ask("who won the cup?", conversation_id=cid))).json()
        assert "contain nothing relevant" in later["message"]["content"]
        assert engine.requests == []  # cove answered itself, strictly, both times
        # strict alone, without collections, changes this turn only
        loose = await http.post(
            "/api/chat", json=ask("who won the cup?", conversation_id=cid, cove_strict=False)
        )
        assert "contain nothing relevant" not in loose.json()["message"]["content"] and engine.requests
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()
        assert (shown["collections"], shown["strict"]) == (["contracts"], True)


async def test_a_refused_turn_keeps_the_choice_it_found(cove: Cove) -> None:
    async with client(make_app(cove)) as http:
        first = await http.post(
            "/api/chat", json=ask("refunds paid?", conversation_id="new", collections=["contracts"])
        )
        cid = first.headers["x-cove-conversation"]
        refused = await http.post("/api/chat", json=ask("x", conversation_id=cid, collections=["nope"]))
        assert refused.status_code == 404 and "nope" in refused.json()["error"]
        assert refused.headers["x-cove-error"] == "CollectionNotFound"
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()
        assert shown["collections"] == ["contracts"]
        assert len(shown["messages"]) == 2  # the refused question was not stored


def test_the_choice_is_kept_in_the_history_and_goes_with_its_conversation(cove_home: Path) -> None:
    with History(db_path(cove_home)) as history:
        chat = history.start("tiny:latest")
        assert kept_choice.of(history, chat.id) == kept_choice.Chosen()
        kept_choice.choose(history, chat.id, kept_choice.Chosen(["a", "b", "a"], True))
        assert kept_choice.of(history, chat.id) == kept_choice.Chosen(["a", "b"], True)
        kept_choice.choose(history, chat.id, kept_choice.Chosen([], True))
        assert kept_choice.of(history, chat.id) == kept_choice.Chosen()
        kept_choice.choose(history, chat.id, kept_choice.Chosen(["a"]))
        history.remove(chat.id)
        with history._db.read() as conn:
            assert conn.execute("SELECT count(*) FROM conversation_collections").fetchone() == (0,)
        with pytest.raises(ConversationNotFound):
            kept_choice.of(history, chat.id)


# -- the CLI: `cove run --resume` picks the collections up, in-process and through a server ------


def test_a_resumed_conversation_answers_from_its_collections(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    code, _, err = run_main(
        monkeypatch, capsys, "run", "tiny", "--kb", "contracts", "--strict", "when are refunds paid?"
    )
    assert code == 0, err
    with History(db_path(cove_home)) as history:
        (chat,) = history.list()
    code, out, err = run_main(monkeypatch, capsys, "run", "--resume", chat.id, "and by bank transfer?")
    assert code == 0, err
    assert "answering from contracts only, as this conversation chose (/kb off stops)" in err
    assert "\nSources:\n  [1] lease.pdf, page 2" in out
    feed(monkeypatch, ["/kb off", "refunds paid?"])
    code, out, err = run_main(monkeypatch, capsys, "run", "--resume", chat.id)
    assert code == 0, err
    assert "No longer answering from documents." in out and "Sources:" not in out
    with History(db_path(cove_home)) as history:  # turned off for the turns after, too
        assert kept_choice.of(history, chat.id) == kept_choice.Chosen()


# -- RemoteCove: errors typed by what the server names, not only by status ------------------------


def test_an_unknown_collection_through_a_server_is_collection_not_found(cove: Cove, cove_home: Path) -> None:
    with LiveServer(make_app(cove)) as url:
        settings = Settings(home=cove_home, host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        remote = RemoteCove(settings)
        try:
            request = TurnRequest("tiny", [{"role": "user", "content": "hi"}], collections=["nope"])
            with pytest.raises(CollectionNotFound, match="server: no collection named 'nope'"):
                remote.chat_turn(request)
            with pytest.raises(ModelNotFound):
                remote.chat_turn(TurnRequest("absent-model", [{"role": "user", "content": "hi"}]))
            with pytest.raises(ConversationNotFound):
                remote.chat_turn(
                    TurnRequest("tiny", [{"role": "user", "content": "hi"}], conversation="abcdef01")
                )
            kb = RemoteKnowledge(remote.http)
            with pytest.raises(CollectionNotFound, match="no collection named 'nope'"):
                kb.info("nope")
            # A 404 of the knowledge routes that is about a model stays ModelNotFound.
            kb.create("unembedded", "missing-embedder:latest")
            kb.add("unembedded", [__file__])
            synced = remote.http.post("/api/cove/kb/unembedded/sync", json={"stream": False})
            assert synced.status_code == 404, synced.text
            with pytest.raises(ModelNotFound, match="missing-embedder"):
                raise_for(synced, KB_ERRORS)
        finally:
            remote.close()


def test_a_resumed_conversation_leaves_out_a_collection_dropped_since(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny", "--kb", "contracts", "when are refunds paid?")
    assert code == 0, err
    with History(db_path(cove_home)) as history:
        (chat,) = history.list()
        kept_choice.choose(history, chat.id, kept_choice.Chosen(["gone-one", "contracts"], True))
    code, out, err = run_main(monkeypatch, capsys, "run", "--resume", chat.id, "refunds by transfer?")
    assert code == 0, err
    assert "note: gone-one is no longer a collection" in err
    assert "answering from contracts only, as this conversation chose" in err
    assert "[1] lease.pdf, page 2" in out
    with History(db_path(cove_home)) as history:  # the turn sent its choice: the gone one is off
        assert kept_choice.of(history, chat.id) == kept_choice.Chosen(["contracts"], True)
