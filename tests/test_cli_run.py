"""`cove run`'s own paths: a catalog model not yet stored, Ctrl-C in a one-shot answer, `/set` alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import _workdir, feed, history, run_main
from fakes import FakeEngine
from gguf_writer import write_gguf

from cove.cli import main as main_module
from cove.cli.chat import Session, command
from cove.config import Settings
from cove.history import History
from cove.library.local import Cove
from cove.store.progress import PullProgress

__all__ = ["_workdir", "history"]


@pytest.fixture
def on_fake(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine, cove_home: Path) -> Iterator[list[str]]:
    """The CLI's in-process Cove on the fake engine; `pull` stores a tiny GGUF and records the name."""
    pulled: list[str] = []

    def pull(self: Cove, ref: str, progress: Any = None) -> Any:
        pulled.append(ref)
        if progress:
            progress(PullProgress("pulling", None, 10, 10))
        return self.store.import_gguf(write_gguf(cove_home.parent / "pulled.gguf"), ref, source="test")

    monkeypatch.setattr(Cove, "pull", pull)
    monkeypatch.setattr(main_module, "Cove", lambda settings: Cove(settings, factory=engine))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    yield pulled


def test_a_catalog_model_not_yet_stored_is_pulled_first(
    on_fake: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(monkeypatch, capsys, "run", "smollm2:135m", "hello")
    assert code == 0, err
    assert on_fake == ["smollm2:135m"]
    assert "smollm2:135m is not in the store yet; pulling it (98 MB) first" in err
    assert out.strip() == "You said: hello"


def test_a_name_that_is_nowhere_is_not_pulled(
    on_fake: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "run", "smolm2:135m", "hello")
    assert code == 1 and on_fake == []
    assert "smollm2:135m" in err  # the closest name is suggested instead


def test_ctrl_c_in_a_one_shot_answer_exits_130_and_keeps_what_came(
    on_fake: list[str],
    fake_cove: Cove,  # stores `tiny`
    cove_home: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine.token_delay = 0.05
    written: list[str] = []

    def interrupt_after_two(text: str) -> int:
        written.append(text)
        if len(written) == 2:
            raise KeyboardInterrupt
        return len(text)

    monkeypatch.setattr("sys.stdout.write", interrupt_after_two)
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny", "tell me a long story please")
    assert code == 130, err
    assert "Traceback" not in err
    with History(cove_home / "cove.db") as kept:
        (chat,) = kept.list()
        user, answer = kept.get(chat.id).messages
    assert user.content == "tell me a long story please"
    assert (
        answer.content.startswith("You said:") and answer.content != "You said: tell me a long story please"
    )


def test_set_alone_says_how_to_use_it(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    assert command(Cove(Settings.from_env()), Session(model="tiny", history=history), "/set") is True
    assert "Usage: /set system TEXT, or /set parameter NAME VALUE" in capsys.readouterr().out


def test_the_repl_sends_a_new_system_prompt_once(
    on_fake: list[str],
    fake_cove: Cove,  # stores `tiny`
    cove_home: Path,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed(monkeypatch, ["hi", "/set system Be brief.", "/set parameter temperature 0.3", "again", "more"])
    code, _, err = run_main(monkeypatch, capsys, "run", "tiny")
    assert code == 0, err
    systems = [[m for m in r["messages"] if m["role"] == "system"] for r in engine.requests]
    brief = [{"role": "system", "content": "Be brief."}]
    assert systems == [[], brief, brief]
    assert [r.get("temperature") for r in engine.requests] == [None, 0.3, 0.3]  # kept by the conversation
    with History(cove_home / "cove.db") as kept:
        (chat,) = kept.list()
        stored = kept.get(chat.id)
    assert stored.system == "Be brief." and stored.parameters == {"temperature": 0.3}
    assert [m.content for m in stored.messages if m.role == "user"] == ["hi", "again", "more"]
