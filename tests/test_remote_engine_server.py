"""A remote model through a running cove server: `/api/ps` and `cove ps` say where it runs, and
regenerating an answer (the web chat's Regenerate) asks the upstream the same question again."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from openai_fakes import Upstream, app
from server_fixtures import LiveServer, client, make_app

import cove.cli  # noqa: F401 - registers every command on the group
from cove.cli import main as main_module
from cove.cli.main import cli
from cove.library.local import Cove
from cove.library.remote import CONVERSATION_HEADER


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    up = Upstream()
    with LiveServer(app(up)) as url:
        yield up, url


def test_api_ps_and_cove_ps_through_the_server_say_where_a_remote_model_runs(
    fake_cove: Cove, upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = upstream
    where = url.removeprefix("http://")
    fake_cove.create("far", f"FROM openai+{url}/v1#m\n")
    with LiveServer(make_app(fake_cove)) as served:
        answer = httpx.post(
            f"{served}/v1/chat/completions",
            json={"model": "far", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        (row,) = httpx.get(f"{served}/api/ps", timeout=10).json()["models"]
        assert row["name"] == "far:latest" and row["cove_runs_on"] == [where] and row["size"] == 0
        monkeypatch.setenv("COVE_HOST", served.removeprefix("http://"))
        monkeypatch.setattr(main_module, "Cove", None)  # the CLI must not use its own store
        shown = CliRunner().invoke(cli, ["ps"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    header, line = shown.stdout.splitlines()
    assert header.split()[-1] == "WHERE"
    assert line.split()[0] == "far:latest" and line.split()[-1] == where


@pytest.mark.anyio
async def test_regenerating_an_answer_on_a_remote_model_asks_the_upstream_again(
    fake_cove: Cove, upstream: tuple[Upstream, str]
) -> None:
    up, url = upstream
    fake_cove.create("far", f"FROM openai+{url}/v1#m\n")
    question = {"role": "user", "content": "name a colour"}
    async with client(make_app(fake_cove)) as http:
        first = await http.post(
            "/api/chat",
            json={"model": "far", "messages": [question], "conversation_id": "new", "stream": False},
        )
        assert first.status_code == 200, first.text
        cid = first.headers[CONVERSATION_HEADER]
        shown = (await http.get(f"/api/cove/conversations/{cid}")).json()["messages"]
        answer = next(m for m in shown if m["role"] == "assistant")
        up.name = "b"  # the second answer reads differently: b0 b1 ...
        branched = await http.post(f"/api/cove/conversations/{cid}/branch", json={"message_id": answer["id"]})
        assert branched.status_code == 200, branched.text
        # No new message in a stored conversation: the server answers its question again.
        async with http.stream(
            "POST", "/api/chat", json={"model": "far", "messages": [], "conversation_id": cid}
        ) as again:
            assert again.status_code == 200
            body = (await again.aread()).decode()
        assert '"done":true' in body.replace(" ", "")
        tree = (await http.get(f"/api/cove/conversations/{cid}/branches")).json()
        now = (await http.get(f"/api/cove/conversations/{cid}")).json()["messages"]
    # The upstream was asked the same question twice; it is stored once, with two answers.
    sent = [[(m["role"], m["content"]) for m in r["messages"] if m["role"] != "system"] for r in up.requests]
    assert sent == [[("user", "name a colour")], [("user", "name a colour")]]
    assert tree["branches"] == 2 and len(tree["messages"]) == 3
    parents = {m["id"]: m["parent_id"] for m in tree["messages"]}
    asked = next(m["id"] for m in now if m["role"] == "user")
    assert sorted(mid for mid, parent in parents.items() if parent == asked) == tree["leaves"]
    assert [(m["role"], m["content"]) for m in now if m["role"] != "system"] == [
        ("user", "name a colour"),
        ("assistant", "b0 b1 b2 b3 b4 "),
    ]
