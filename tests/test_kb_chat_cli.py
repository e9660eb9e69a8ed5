"""`cove run MODEL --kb NAME [--strict]` and `/kb NAME` in a chat: the sources after the answer,
in-process and through a running server (the CLI's two backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import _workdir, feed, run_main
from fakes import FakeEngine
from kb_fakes import FakeKnowledge
from server_fixtures import LiveServer, make_app

from cove.cli import main as main_module
from cove.config import Settings
from cove.history import History, db_path
from cove.history import citations as kept
from cove.library.local import Cove

__all__ = ["_workdir"]
REFUND = "Refunds are paid within 30 days of a written request to the seller, by bank transfer only. " * 3


def knowledge() -> FakeKnowledge:
    kb = FakeKnowledge()
    kb.add("contracts", "lease.pdf", "Parties: Ann and Bob.", REFUND)
    return kb


@pytest.fixture(params=["library", "server"])
def door(
    request: pytest.FixtureRequest, fake_cove: Cove, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The CLI in-process (its own Cove on the fake engine), or through a server over `fake_cove`."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    if request.param == "library":

        def local(settings: Settings) -> Cove:
            cove = Cove(settings, factory=engine)
            cove.conversations.knowledge_base = knowledge()
            return cove

        monkeypatch.setattr(main_module, "Cove", local)
        yield "library"
        return
    fake_cove.conversations.knowledge_base = knowledge()
    fake_cove.knowledge.create("contracts", "hash-bow")  # what /api/cove/kb/NAME looks up
    with LiveServer(make_app(fake_cove)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        yield "server"


def test_run_with_kb_prints_the_sources(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    code, out, err = run_main(
        monkeypatch, capsys, "run", "tiny", "--kb", "contracts", "when are refunds paid?"
    )
    assert code == 0, err
    answer, _, sources = out.partition("\nSources:\n")
    # The fake model repeats what it got: the sources, then the question.
    assert answer.startswith("You said: Sources from") and answer.endswith(
        "Question: when are refunds paid?\n"
    )
    first, quoted = sources.splitlines()[:2]
    assert first == "  [1] lease.pdf, page 2"
    assert quoted.startswith("      “Refunds are paid within 30 days") and quoted.endswith("…”")
    assert len(quoted) < 200  # short: the whole passage is in `cove kb search` and the history
    with History(db_path(cove_home)) as history:
        (chat,) = history.list()
        stored = kept.of(history, chat.id)
    assert [c[0]["file"] for c in stored.values()] == ["lease.pdf"]


def test_strict_with_nothing_relevant_says_so(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], engine: FakeEngine
) -> None:
    code, out, err = run_main(monkeypatch, capsys, "run", "tiny", "--kb", "contracts", "--strict", "who won?")
    assert code == 0, err
    assert "contain nothing relevant" in out and "Sources:" not in out
    assert engine.requests == []


def test_an_unknown_collection_is_one_line_and_exit_1(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny", "--kb", "nope", "hello")
    assert code == 1 and "no collection named 'nope'" in err


def test_strict_needs_a_collection(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny", "--strict", "hello")
    assert code == 1 and "--kb NAME" in err


def test_kb_in_a_chat_turns_documents_on_and_off(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed(monkeypatch, ["/kb contracts", "refunds paid?", "/kb", "/kb off", "refunds paid?"])
    code, out, err = run_main(monkeypatch, capsys, "run", "tiny")
    assert code == 0, err
    assert "Answering from contracts, with sources after each answer." in out
    assert "Answering from: contracts" in out and "No longer answering from documents." in out
    assert out.count("Sources:") == 1
    before, after = out.split("No longer answering from documents.")
    assert "[1] lease.pdf, page 2" in before and "[1]" not in after


def test_a_resumed_conversation_shows_the_last_answer_s_sources(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cove_home: Path
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny", "--kb", "contracts", "when are refunds paid?")
    assert code == 0, err
    with History(db_path(cove_home)) as history:
        (chat,) = history.list()
    feed(monkeypatch, [])
    code, _, err = run_main(monkeypatch, capsys, "run", "--resume", chat.id)
    assert code == 0, err
    assert "sources: [1] lease.pdf, page 2" in err


def test_kb_strict_in_a_chat(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], engine: FakeEngine
) -> None:
    feed(monkeypatch, ["/kb contracts --strict", "who won the match?", "/kb --strict"])
    code, out, err = run_main(monkeypatch, capsys, "run", "tiny")
    assert code == 0, err
    assert "Answering from contracts only, saying when they do not say" in out
    assert "contain nothing relevant" in out and engine.requests == []
    assert "Name a collection: /kb NAME [--strict]" in out


def test_kb_with_a_name_that_is_not_there_says_so_at_once(
    door: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], engine: FakeEngine
) -> None:
    feed(monkeypatch, ["/kb nope", "/kb", "hello"])
    code, out, err = run_main(monkeypatch, capsys, "run", "tiny")
    assert code == 0, err
    assert "no collection named 'nope'" in err
    assert "Answering from: none" in out  # the chat goes on, answering as before
    assert "Sources:" not in out and engine.requests
