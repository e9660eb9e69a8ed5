"""Destructive commands ask first on a terminal, refuse without one, and take --yes/--force."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import _workdir, history, run_main
from click.testing import CliRunner, Result
from fakes import FakeEngine
from gguf_writer import DEFAULT_METADATA, write_gguf
from server_fixtures import LiveServer, make_app

import cove.cli  # noqa: F401 - registers every command on the group
from cove.cli import confirm as confirm_module
from cove.cli import main as main_module
from cove.cli.main import cli
from cove.history import History
from cove.library.local import Cove

__all__ = ["_workdir", "history"]  # fixtures shared from cli_helpers

COVE = Path(sys.executable).with_name("cove")


@pytest.fixture(autouse=True)
def on_fake(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine) -> None:
    monkeypatch.setattr(main_module, "Cove", lambda settings: Cove(settings, factory=engine))


@pytest.fixture
def two_models(fake_cove: Cove, cove_home: Path) -> Cove:
    """`tiny` and a different `other` (its own GGUF), so a replaced copy is visible by digest."""
    other = write_gguf(cove_home.parent / "other.gguf", {**DEFAULT_METADATA, "general.name": "other"})
    fake_cove.store.import_gguf(other, "other", source="test")
    assert fake_cove.model("other").digest != fake_cove.model("tiny").digest
    return fake_cove


@pytest.fixture
def on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input counts as a terminal; CliRunner's `input` is what the person types."""
    monkeypatch.setattr(confirm_module, "stdin_is_terminal", lambda: True)


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--local", *args], input=input)


def digest(cove: Cove, name: str) -> str:
    return cove.model(name).digest


# -- cove cp onto an existing name


def test_cp_refuses_to_replace_without_a_terminal(
    two_models: Cove, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(two_models, "other")
    code, out, err = run_main(monkeypatch, capsys, "--local", "cp", "tiny", "other")
    assert code == 1 and out == ""
    assert err == (
        "Error: 'other:latest' already exists: pass --yes to go ahead (there is no terminal to ask on)\n"
    )
    assert digest(two_models, "other") == before


@pytest.mark.parametrize("flag", ["--yes", "-y", "--force"])
def test_cp_replaces_with_yes(two_models: Cove, flag: str) -> None:
    result = invoke("cp", "tiny", "other", flag)
    assert result.exit_code == 0, result.output
    assert digest(two_models, "other") == digest(two_models, "tiny")


def test_cp_asks_on_a_terminal(two_models: Cove, on_terminal: None) -> None:
    before = digest(two_models, "other")
    declined = invoke("cp", "tiny", "other", input="n\n")
    assert declined.exit_code == 1
    assert "'other:latest' exists; replace it with a copy of 'tiny'? [y/N]" in declined.stderr
    assert "nothing changed" in declined.stderr
    assert digest(two_models, "other") == before

    accepted = invoke("cp", "tiny", "other", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert digest(two_models, "other") == digest(two_models, "tiny")


def test_cp_to_a_new_name_asks_nothing(fake_cove: Cove) -> None:
    result = invoke("cp", "tiny", "Fresh")
    assert result.exit_code == 0 and result.stderr == ""
    assert fake_cove.model("fresh").digest == fake_cove.model("tiny").digest


def test_cp_through_a_server_checks_the_servers_store(
    two_models: Cove, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(two_models, "other")

    def no_local_store(settings: object) -> Cove:
        raise AssertionError("the CLI used its own store, not the server's")

    with LiveServer(make_app(two_models)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        monkeypatch.setattr(main_module, "Cove", no_local_store)
        refused = CliRunner().invoke(cli, ["cp", "tiny", "other"])
        assert refused.exit_code == 1
        assert "'other:latest' already exists" in str(refused.exception)
        assert digest(two_models, "other") == before
        replaced = CliRunner().invoke(cli, ["cp", "tiny", "other", "--yes"])
        assert replaced.exit_code == 0, replaced.output
    assert digest(two_models, "other") == digest(two_models, "tiny")


# -- cove persona add onto an existing persona


def test_persona_add_refuses_to_replace_without_a_terminal(fake_cove: Cove, history: History) -> None:
    history.add_persona("pirate", "Talk like a pirate.")
    result = invoke("persona", "add", "pirate", input="Talk like a robot.\n")
    assert result.exit_code == 1
    assert "persona 'pirate' exists: pass --yes to go ahead" in str(result.exception)
    assert history.persona("pirate").system == "Talk like a pirate."

    assert invoke("persona", "add", "pirate", "--force", input="Talk like a robot.\n").exit_code == 0
    assert history.persona("pirate").system == "Talk like a robot."


def test_persona_add_asks_on_a_terminal(fake_cove: Cove, history: History, on_terminal: None) -> None:
    history.add_persona("pirate", "Talk like a pirate.")
    declined = invoke("persona", "add", "pirate", "Talk like a robot.", input="\n")  # default: no
    assert declined.exit_code == 1 and "replace its prompt? [y/N]" in declined.stderr
    assert history.persona("pirate").system == "Talk like a pirate."
    accepted = invoke("persona", "add", "pirate", "Talk like a robot.", input="yes\n")
    assert accepted.exit_code == 0 and accepted.stdout == "saved persona 'pirate'\n"
    assert history.persona("pirate").system == "Talk like a robot."


def test_new_persona_asks_nothing(fake_cove: Cove, history: History) -> None:
    result = invoke("persona", "add", "poet", input="Answer in verse.\n")
    assert result.exit_code == 0 and result.stderr == ""
    assert history.persona("poet").system == "Answer in verse."


# -- cove history rm --all


def two_conversations(history: History) -> None:
    for text in ("hello", "goodbye"):
        chat = history.start(model="tiny:latest", source="cli")
        history.add_message(chat.id, "user", text)


def test_rm_all_refuses_without_a_terminal(fake_cove: Cove, history: History) -> None:
    two_conversations(history)
    result = invoke("history", "rm", "--all")
    assert result.exit_code == 1
    assert "--all would delete 2 conversations for good: pass --yes" in str(result.exception)
    assert len(history.list()) == 2
    done = invoke("history", "rm", "--all", "-y")
    assert done.exit_code == 0 and done.stdout == "deleted 2 conversations\n"
    assert history.list() == []


def test_rm_all_asks_on_a_terminal(fake_cove: Cove, history: History, on_terminal: None) -> None:
    two_conversations(history)
    declined = invoke("history", "rm", "--all", input="n\n")
    assert declined.exit_code == 1 and "Delete all 2 conversations for good? [y/N]" in declined.stderr
    assert len(history.list()) == 2
    assert invoke("history", "rm", "--all", input="y\n").exit_code == 0
    assert history.list() == []


def test_rm_all_of_nothing_asks_nothing(fake_cove: Cove) -> None:
    result = invoke("history", "rm", "--all")
    assert result.exit_code == 0 and result.stdout == "deleted 0 conversations\n"


# -- on a real terminal


def read_until(fd: int, marker: bytes, seconds: float = 60) -> bytes:
    data = b""
    end = time.monotonic() + seconds
    while marker not in data and time.monotonic() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
@pytest.mark.parametrize(("answer", "left"), [(b"n\n", 2), (b"y\n", 0)])
def test_rm_all_on_a_real_terminal(fake_cove: Cove, history: History, answer: bytes, left: int) -> None:
    import pty

    two_conversations(history)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(COVE), [str(COVE), "--local", "history", "rm", "--all"])
    screen = read_until(fd, b"[y/N]")
    assert b"Delete all 2 conversations for good? [y/N]" in screen
    os.write(fd, answer)
    screen += read_until(fd, b"\x00", seconds=30)  # to the end of its output
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == (1 if left else 0), screen
    assert len(history.list()) == left
