"""Branches in the history and its API: an edit or a second answer starts a sibling, the earlier
branch stays and can be shown again; one message can be replaced or deleted; settings are saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from fakes import FakeEngine
from server_fixtures import anyio_backend, client, make_app

from cove.history import History
from cove.history.branches import MessageNotFound
from cove.history.db import db_path
from cove.library.local import Cove

__all__ = ["anyio_backend"]


def contents(history: History, cid: str) -> list[str]:
    return [m.content for m in history.get(cid).messages]


def test_a_new_message_hangs_under_the_shown_branch(tmp_path: Path) -> None:
    with History(tmp_path / "cove.db") as history:
        cid = history.start("tiny").id
        q = history.add_message(cid, "user", "q1")
        a = history.add_message(cid, "assistant", "a1")
        tree = history.tree(cid)
        assert tree.parents == {q.id: None, a.id: q.id} and tree.leaf == a.id


def test_editing_a_question_branches_and_keeps_the_first_branch(tmp_path: Path) -> None:
    with History(tmp_path / "cove.db") as history:
        cid = history.start("tiny").id
        q1 = history.add_message(cid, "user", "q1")
        history.add_message(cid, "assistant", "a1")
        q2 = history.add_message(cid, "user", "q2")
        history.add_message(cid, "assistant", "a2")
        shown = history.branch_before(cid, q2.id)
        assert [m.content for m in shown.messages] == ["q1", "a1"]
        q2b = history.add_message(cid, "user", "q2 edited")
        history.add_message(cid, "assistant", "a2 edited")
        assert contents(history, cid) == ["q1", "a1", "q2 edited", "a2 edited"]
        assert history.tree(cid).siblings(q2b.id) == [q2.id, q2b.id]
        history.select_branch(cid, q2.id)  # "‹": back to the first version, to its end
        assert contents(history, cid) == ["q1", "a1", "q2", "a2"]
        history.branch_before(cid, q1.id)  # editing the very first question
        history.add_message(cid, "user", "q1 again")
        assert contents(history, cid) == ["q1 again"]
        assert len(history.tree(cid).children(None)) == 2
        assert history.context_messages(cid) == [{"role": "user", "content": "q1 again"}]


def test_a_branch_keeps_what_a_summary_on_another_branch_took_out_of_context(tmp_path: Path) -> None:
    with History(tmp_path / "cove.db") as history:
        cid = history.start("tiny").id
        history.add_message(cid, "user", "q1")
        history.add_message(cid, "assistant", "a1")
        q2 = history.add_message(cid, "user", "q2")
        history.add_message(cid, "assistant", "a2")
        history.replace_with_summary(cid, 3, "they spoke of q1 and q2")  # on the first branch
        history.add_message(cid, "user", "q3")
        sent = history.context_messages(cid)
        assert sent[0]["content"].endswith("they spoke of q1 and q2") and len(sent) == 2
        history.branch_before(cid, q2.id)  # a new version of q2: its branch has no summary
        history.add_message(cid, "user", "q2 again")
        assert [m["content"] for m in history.context_messages(cid)] == ["q1", "a1", "q2 again"]
        history.select_branch(cid, q2.id)  # back: the summary stands in again, nothing is lost
        back = history.context_messages(cid)
        assert back[0]["content"].endswith("they spoke of q1 and q2")
        assert back[1:] == [{"role": "user", "content": "q3"}]  # and not q1, a1 a second time


def test_delete_one_message_and_replace_one(tmp_path: Path) -> None:
    with History(tmp_path / "cove.db") as history:
        cid = history.start("tiny").id
        history.add_message(cid, "user", "q1")
        a1 = history.add_message(cid, "assistant", "a1 with a secretword")
        history.add_message(cid, "user", "q2")
        assert [m.content for m in history.remove_message(cid, a1.id).messages] == ["q1", "q2"]
        assert history.search("secretword") == []
        last = history.get(cid).messages[-1]
        history.replace_message(cid, last.id, "q2 with otterword")
        assert contents(history, cid) == ["q1", "q2 with otterword"]
        assert [h.message_id for h in history.search("otterword")] == [last.id]
        gone = history.remove_message(cid, last.id)  # the leaf itself: the branch ends at its parent
        assert [m.content for m in gone.messages] == ["q1"]
        assert history.add_message(cid, "assistant", "a again").content == "a again"
        assert contents(history, cid) == ["q1", "a again"]
        with pytest.raises(MessageNotFound):
            history.remove_message(cid, 10_000)
        other = history.start("tiny").id
        with pytest.raises(MessageNotFound):  # a message of another conversation is not this one's
            history.branch_before(other, last.id - 1)


def test_the_migration_links_conversations_written_before_branches(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with History(path) as history:
        cid = history.start("tiny").id
        for text in ("q1", "a1", "q2"):
            history.add_message(cid, "user", text)
    conn = apsw.Connection(str(path))  # undo the step, as an older cove left the file
    conn.execute(
        "DROP TRIGGER messages_tree; DROP INDEX messages_by_parent;"
        " ALTER TABLE messages DROP COLUMN parent_id; ALTER TABLE conversations DROP COLUMN leaf_id;"
        " DELETE FROM _migrations WHERE name = 'm006_branches'"
    )
    conn.close()
    with History(path) as history:
        tree = history.tree(cid)
        ids = [m.id for m in history.get(cid).messages]
        assert tree.parents == {ids[0]: None, ids[1]: ids[0], ids[2]: ids[1]} and tree.leaf == ids[2]
        assert contents(history, cid) == ["q1", "a1", "q2"]


# -- through the server, as the page uses it ----------------------------------------------------


def turn(text: str | None, cid: str, **extra: Any) -> dict[str, Any]:
    """A turn with a new question; with None, a turn with no new message, which in a stored
    conversation answers the shown branch again (the page's Regenerate)."""
    messages = [] if text is None else [{"role": "user", "content": text}]
    return {"model": "tiny", "messages": messages, "stream": False, "conversation_id": cid, **extra}


async def shown(c: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    r = await c.get(f"/api/cove/conversations/{cid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.anyio
async def test_edit_and_regenerate_through_the_api(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=turn("first question", "new"))
        cid = r.headers["x-cove-conversation"]
        chat = await shown(c, cid)
        question, answer = chat["messages"]
        assert question["siblings"] == [question["id"]] and answer["parent_id"] == question["id"]
        # Regenerate: the answer's parent is shown, and a turn with no new message answers it again.
        r = await c.post(f"/api/cove/conversations/{cid}/branch", json={"message_id": answer["id"]})
        assert [m["role"] for m in r.json()["messages"]] == ["user"]
        r = await c.post("/api/chat", json=turn(None, cid))
        assert r.status_code == 200, r.text
        assert engine.requests[-1]["messages"][-1] == {"role": "user", "content": "first question"}
        chat = await shown(c, cid)
        assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]  # the question once
        second = chat["messages"][1]
        assert second["siblings"] == [answer["id"], second["id"]]
        # Edit the question: a new first message, with its own answer; the old one still there.
        await c.post(f"/api/cove/conversations/{cid}/branch", json={"message_id": question["id"]})
        await c.post("/api/chat", json=turn("an edited question", cid))
        chat = await shown(c, cid)
        assert chat["messages"][0]["content"] == "an edited question"
        assert chat["messages"][0]["siblings"] == [question["id"], chat["messages"][0]["id"]]
        assert engine.requests[-1]["messages"] == [{"role": "user", "content": "an edited question"}]
        r = await c.get(f"/api/cove/conversations/{cid}/branches")
        assert r.json()["branches"] == 3 and len(r.json()["messages"]) == 5
        # Nothing to answer again when the branch shown ends with an answer; nothing is stored.
        r = await c.post("/api/chat", json=turn(None, cid))
        assert r.status_code == 400 and "nothing to answer again" in r.json()["error"]
        assert len((await c.get(f"/api/cove/conversations/{cid}/branches")).json()["messages"]) == 5
        # Without a stored conversation, no messages only loads the model (Ollama's rule).
        r = await c.post("/api/chat", json={"model": "tiny", "messages": [], "stream": False})
        assert r.status_code == 200 and r.json()["done_reason"] == "load"
        r = await c.post(f"/api/cove/conversations/{cid}/select", json={"message_id": question["id"]})
        back = r.json()["messages"]
        assert back[0]["content"] == "first question" and back[-1]["id"] == second["id"]


@pytest.mark.anyio
async def test_replace_delete_and_settings_through_the_api(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json=turn("hello", "new"))
        cid = r.headers["x-cove-conversation"]
        question, answer = (await shown(c, cid))["messages"]
        r = await c.patch(f"/api/cove/conversations/{cid}/messages/{question['id']}", json={"content": "hi"})
        assert r.status_code == 200 and r.json()["messages"][0]["content"] == "hi"
        r = await c.delete(f"/api/cove/conversations/{cid}/messages/{answer['id']}")
        assert [m["content"] for m in r.json()["messages"]] == ["hi"]
        assert (await c.delete(f"/api/cove/conversations/{cid}/messages/999999")).status_code == 404
        assert (await c.delete(f"/api/cove/conversations/{cid}/messages/x")).status_code == 400
        body = {"system": "Be brief.", "parameters": {"temperature": 0.2, "num_predict": 50}, "num_ctx": 1024}
        r = await c.post(f"/api/cove/conversations/{cid}/settings", json=body)
        assert r.status_code == 200, r.text
        saved = r.json()
        assert saved["system"] == "Be brief." and saved["num_ctx"] == 1024
        assert saved["parameters"] == {"temperature": 0.2, "num_predict": 50}
        clear = {"parameters": {"temperature": None}}
        r = await c.post(f"/api/cove/conversations/{cid}/settings", json=clear)
        assert r.json()["parameters"] == {"num_predict": 50}  # back to the model's temperature
        await c.post("/api/chat", json=turn("and now?", cid))
        sent = engine.requests[-1]
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        r = await c.post(f"/api/cove/conversations/{cid}/settings", json={"temperature": 3})
        assert r.status_code == 400  # an unknown field is refused, not ignored
