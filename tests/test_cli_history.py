"""`cove run` writing the history, and `cove history`, `cove persona` and `cove stats`, on the fake engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cli_helpers
import pytest
from cli_helpers import _workdir, feed, history
from click.testing import CliRunner, Result
from fakes import FakeEngine

import cove.cli  # noqa: F401 - registers every command on the group
from cove.cli import main as main_module
from cove.cli.chat import Session, repl
from cove.cli.main import cli
from cove.history import PRICES_AS_OF, ConversationNotFound, History, PersonaNotFound
from cove.library.local import Cove

__all__ = ["_workdir", "history"]  # fixtures shared from cli_helpers


@pytest.fixture(autouse=True)
def on_fake(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine, fake_cove: Cove) -> FakeEngine:
    """The CLI's in-process Cove runs on the fake engine, with `tiny` in the store."""
    monkeypatch.setattr(main_module, "Cove", lambda settings: Cove(settings, factory=engine))
    return engine


def invoke(*args: str, input: str = "") -> Result:
    result = CliRunner().invoke(cli, ["--local", *args], input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def invoke_raw(*args: str) -> Any:
    """Without click's handling, so cove's errors arrive as exceptions."""
    return cli.main(["--local", *args], standalone_mode=False)


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    return cli_helpers.run_main(monkeypatch, capsys, "--local", *args)


def listed() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(invoke("history", "list", "--json").stdout)
    return rows


def chat_once(text: str = "hello", model: str = "tiny") -> str:
    """`cove run MODEL TEXT`; returns the id of the conversation it stored."""
    before = {row["id"] for row in listed()}
    assert invoke("run", model, text).stdout == f"You said: {text}\n"
    (new,) = [row["id"] for row in listed() if row["id"] not in before]
    return str(new)


# -- cove run keeps every turn ---------------------------------------------------------------


def test_run_stores_the_conversation(history: History) -> None:
    cid = chat_once("hello")
    (row,) = listed()
    assert row == {**row, "id": cid, "title": "hello", "model": "tiny:latest", "messages": 2}
    chat = history.get(cid)
    assert chat.source == "cli"
    assert [(m.role, m.content) for m in chat.messages] == [
        ("user", "hello"),
        ("assistant", "You said: hello"),
    ]

    table = invoke("history", "list").stdout
    assert cid[:8] in table and "hello" in table and "tiny:latest" in table


def test_show_and_search() -> None:
    cid = chat_once("hello")
    chat_once("something else")

    shown = invoke("history", "show", cid).stdout
    assert shown.startswith(f"{cid}  hello  (tiny:latest, cli)")
    assert "[user]\nhello\n" in shown
    assert "[assistant]\nYou said: hello" in shown
    assert "something else" not in shown
    assert invoke("history", "show", cid[:6]).stdout == shown  # a unique prefix is enough

    found = invoke("history", "search", "hello").stdout.splitlines()
    assert found and all(line.startswith(cid[:8]) for line in found)
    assert any(line.split()[1] == "user" for line in found)
    assert invoke("history", "search", "zebra").stdout == "no matches\n"


def test_unknown_conversation_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConversationNotFound):
        invoke_raw("history", "show", "feedbeef")
    code, out, err = run_main(monkeypatch, capsys, "history", "show", "feedbeef")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("Error: no conversation with id 'feedbeef'")
    code, _, err = run_main(monkeypatch, capsys, "run", "--resume", "feedbeef", "hi")
    assert code == 1 and err.startswith("Error: no conversation")


def test_resume_continues_with_its_model(fake_cove: Cove, engine: FakeEngine, history: History) -> None:
    fake_cove.copy("tiny", "other")
    cid = chat_once("hello", model="other")

    result = invoke("run", "--resume", cid, "again")
    assert result.stdout == "You said: again\n"
    assert "hello" in result.stderr  # the last turns are shown before the answer
    assert [row["id"] for row in listed()] == [cid]
    chat = history.get(cid)
    assert [m.content for m in chat.messages] == ["hello", "You said: hello", "again", "You said: again"]
    assert engine.loads[-1].name == "other:latest"
    assert [m["content"] for m in engine.requests[-1]["messages"]] == ["hello", "You said: hello", "again"]


def test_resume_tells_when_older_turns_were_summarised(history: History, engine: FakeEngine) -> None:
    chat = history.start("tiny:latest", num_ctx=64)
    history.add_message(chat.id, "user", "a" * 60)
    history.add_message(chat.id, "assistant", "b" * 60)

    result = invoke("run", "--resume", chat.id, "c" * 60)
    assert "note: the conversation outgrew the 64-token context: 2 older messages" in result.stderr
    assert result.stdout == "You said: " + "c" * 60 + "\n"
    assert len(engine.requests) == 2  # the summary, then the answer
    assert [m.in_context for m in history.get(chat.id).messages] == [False, False, True, True, True]


# -- personas --------------------------------------------------------------------------------


def test_persona_add_list_and_run(engine: FakeEngine, history: History) -> None:
    assert invoke("persona", "add", "pirate", "Talk like a pirate.").stdout == "saved persona 'pirate'\n"
    assert invoke("persona", "add", "poet", input="Answer in verse.\n").stdout == "saved persona 'poet'\n"
    table = invoke("persona", "list").stdout
    assert "pirate" in table and "Talk like a pirate." in table
    assert "poet" in table and "Answer in verse." in table

    invoke("run", "tiny", "--persona", "pirate", "hi")
    assert engine.requests[-1]["messages"] == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "hi"},
    ]
    (row,) = listed()
    stored = history.get(row["id"])
    assert (stored.persona, stored.system) == ("pirate", "Talk like a pirate.")

    assert invoke("persona", "rm", "pirate").stdout == "deleted persona 'pirate'\n"
    assert "pirate" not in invoke("persona", "list").stdout
    with pytest.raises(PersonaNotFound):
        invoke_raw("run", "tiny", "--persona", "pirate", "hi")


def test_repl_persona_and_clear(
    fake_cove: Cove,
    engine: FakeEngine,
    history: History,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    history.add_persona("pirate", "Talk like a pirate.")
    feed(monkeypatch, ["hello", "/persona pirate", "ahoy", "/clear", "fresh start", "/persona nobody"])
    session = Session(model="tiny", history=history)
    repl(fake_cove, session, verbose=False)
    captured = capsys.readouterr()
    assert "Using persona 'pirate'." in captured.out
    assert "Error: no persona named 'nobody'" in captured.err

    assert engine.requests[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert engine.requests[1]["messages"] == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "You said: hello"},
        {"role": "user", "content": "ahoy"},
    ]
    # /clear started a new conversation, still with the pirate's prompt but none of the old turns.
    assert engine.requests[2]["messages"] == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "fresh start"},
    ]
    first, second = sorted(history.list(), key=lambda row: row.created_at)
    assert (first.message_count, second.message_count) == (4, 2)
    assert history.get(first.id).system == "Talk like a pirate."
    assert session.conversation_id == second.id
    assert history.get(second.id).persona == "pirate"


# -- export, import, delete ------------------------------------------------------------------


def test_export_json_and_markdown(tmp_path: Path) -> None:
    cid = chat_once("hello")
    data = json.loads(invoke("history", "export", "--format", "json").stdout)
    assert data["format"] == "cove.history" and data["version"] == 1
    (exported,) = data["conversations"]
    assert exported["id"] == cid
    assert [m["content"] for m in exported["messages"]] == ["hello", "You said: hello"]
    assert exported["messages"][1]["completion_tokens"] == 3

    target = tmp_path / "chat.md"
    result = invoke("history", "export", cid, "--format", "md", "-o", str(target))
    assert result.stdout == ""
    text = target.read_text("utf-8")
    assert text.startswith("# hello\n")
    assert "## User\n\nhello" in text
    assert "## Assistant (tiny:latest)\n\nYou said: hello" in text


def test_import_into_a_fresh_home_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = chat_once("hello")
    exported = tmp_path / "export.json"
    invoke("history", "export", "-o", str(exported))

    monkeypatch.setenv("COVE_HOME", str(tmp_path / "other-home"))
    assert listed() == []
    first = invoke("history", "import", str(exported)).stdout
    assert first == "imported 1 conversations, skipped 0 already here\n"
    again = invoke("history", "import", str(exported)).stdout
    assert again == "imported 0 conversations, skipped 1 already here\n"
    assert [row["id"] for row in listed()] == [cid]
    assert "You said: hello" in invoke("history", "show", cid).stdout


def test_rename_rm_and_rm_all() -> None:
    first = chat_once("hello")
    second = chat_once("goodbye")

    assert invoke("history", "rename", first, "Greetings").stdout == f"renamed {first}\n"
    assert {row["id"]: row["title"] for row in listed()}[first] == "Greetings"

    assert invoke("history", "rm", first).stdout == f"deleted {first}\n"
    with pytest.raises(ConversationNotFound):
        invoke_raw("history", "show", first)
    assert [row["id"] for row in listed()] == [second]
    assert invoke("history", "search", "hello").stdout == "no matches\n"

    usage = CliRunner().invoke(cli, ["--local", "history", "rm"])
    assert usage.exit_code == 2 and "--all" in usage.output

    chat_once("third")
    assert invoke("history", "rm", "--all", "--yes").stdout == "deleted 2 conversations\n"
    assert listed() == []


# -- stats -----------------------------------------------------------------------------------


def test_stats_json_and_table() -> None:
    chat_once("hello")  # the fake counts 5 prompt tokens and one per word: "You said: hello"
    chat_once("hello again", model="tiny:latest")

    data = json.loads(invoke("stats", "--json").stdout)
    assert (data["conversations"], data["messages"]) == (2, 4)
    assert (data["tokens_in"], data["tokens_out"]) == (10, 7)
    assert list(data["by_model"]) == ["tiny:latest"]  # `tiny` and `tiny:latest` are one model
    usage = data["by_model"]["tiny:latest"]
    assert (usage["answers"], usage["tokens_in"], usage["tokens_out"]) == (2, 10, 7)
    assert usage["avg_tokens_per_s"] == 100.0
    assert data["prices_as_of"] == PRICES_AS_OF
    assert data["cloud_cost_usd"]["gpt-4o"] == pytest.approx((10 * 2.50 + 7 * 10.00) / 1_000_000)

    text = invoke("stats").stdout
    assert "all time: 2 conversations, 4 messages, 10 tokens in, 7 tokens out" in text
    assert "tiny:latest" in text and "100.0" in text
    assert f"prices as of {PRICES_AS_OF}" in text
    assert "gpt-4o" in text and "claude-sonnet-4" in text
    assert invoke("stats", "--days", "1", "--json").stdout == invoke("stats", "--json").stdout


def test_stats_with_nothing_yet() -> None:
    data = json.loads(invoke("stats", "--json").stdout)
    assert (data["conversations"], data["messages"], data["tokens_in"], data["tokens_out"]) == (0, 0, 0, 0)
    assert data["by_model"] == {}
    assert set(data["cloud_cost_usd"].values()) == {0}
