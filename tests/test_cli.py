"""Tests for the `cove` command: logic through click's runner, and a few real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import _workdir, feed, history, run_main
from click.testing import CliRunner, Result
from fakes import FakeEngine
from gguf_writer import DEFAULT_METADATA, write_gguf

import cove.cli.chat  # noqa: F401 - registers `cove run` on the group
from cove.cli import main as main_module
from cove.cli.chat import Session, repl
from cove.cli.main import cli
from cove.config import Settings
from cove.errors import InvalidModelFile, ModelNotFound
from cove.history import History
from cove.library.local import Cove

COVE = Path(sys.executable).with_name("cove")

__all__ = ["_workdir", "history"]  # fixtures shared from cli_helpers


@pytest.fixture
def on_fake(monkeypatch: pytest.MonkeyPatch, engine: FakeEngine) -> FakeEngine:
    """Make the CLI's in-process Cove use the fake engine."""
    monkeypatch.setattr(main_module, "Cove", lambda settings: Cove(settings, factory=engine))
    return engine


@pytest.fixture
def tiny_store(cove_home: Path) -> Iterator[Cove]:
    """A store with `tiny:latest`, for commands that only read the store."""
    with Cove(Settings.from_env()) as handle:
        handle.store.import_gguf(write_gguf(cove_home.parent / "tiny.gguf"), "tiny", source="test")
        yield handle


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def invoke_raw(*args: str) -> Any:
    """Run without click's own handling, so cove's errors arrive as exceptions."""
    return cli.main(list(args), standalone_mode=False)


def cove_process(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `cove` script in a child process, with this test's COVE_HOME."""
    return subprocess.run(
        [str(COVE), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "COVE_LOCAL": "1", **env},
        timeout=300,
        check=False,
    )


# -- store commands, in process --------------------------------------------------------------


def test_list_json(tiny_store: Cove) -> None:
    rows = json.loads(invoke("list", "--json").stdout)
    assert [row["name"] for row in rows] == ["tiny:latest"]
    assert rows[0]["digest"] == tiny_store.model("tiny").digest
    assert rows[0]["id"] == rows[0]["digest"][:12]
    assert rows[0]["kind"] == "base"


def test_list_says_what_each_model_is_for(tiny_store: Cove, cove_home: Path) -> None:
    chat = {**DEFAULT_METADATA, "tokenizer.chat_template": "{{ messages[0].content }}"}
    write_gguf(cove_home / "chatty.gguf", chat)
    invoke("import", str(cove_home / "chatty.gguf"), "chatty")
    kinds = {row["name"]: row["kind"] for row in json.loads(invoke("list", "--json").stdout)}
    assert kinds == {"tiny:latest": "base", "chatty:latest": "chat"}  # tiny has no chat template
    assert "KIND" in invoke("list").stdout.splitlines()[0]


def test_list_table(tiny_store: Cove) -> None:
    result = invoke("list")
    assert "NAME" in result.stdout
    assert "tiny:latest" in result.stdout


def test_list_available(cove_home: Path) -> None:
    entries = json.loads(invoke("list", "--available", "--json").stdout)
    names = [e["name"] for e in entries]
    assert "smollm2:135m" in names and "gemma3:270m" in names
    assert all(e["source"] for e in entries)
    assert list(cove_home.glob("manifests/**/*.json")) == []  # the catalog is not the store


def test_show_json(tiny_store: Cove) -> None:
    shown = json.loads(invoke("show", "tiny", "--json").stdout)
    assert shown["name"] == "tiny:latest"
    assert shown["info"]["architecture"] == "llama"
    assert shown["recipe"]["base"] == "tiny:latest"


def test_show_text(tiny_store: Cove) -> None:
    text = invoke("show", "tiny").stdout
    assert "architecture" in text and "llama" in text
    assert "FROM tiny:latest" in text


def test_cp_and_rm(tiny_store: Cove) -> None:
    assert "copied 'tiny' to 'other:latest'" in invoke("cp", "tiny", "other").stdout
    digest = tiny_store.model("tiny").digest
    assert "deleted 'tiny:latest'" in invoke("rm", "tiny").stdout
    assert tiny_store.store.blobs.exists(digest)
    invoke("rm", "other")
    assert tiny_store.models() == []
    assert not tiny_store.store.blobs.exists(digest)


def test_import_and_errors(cove_home: Path, tmp_path: Path) -> None:
    good = write_gguf(tmp_path / "My Model.gguf")
    assert "imported 'my-model:latest'" in invoke("import", str(good)).stdout
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(InvalidModelFile):
        invoke_raw("import", str(bad))
    with pytest.raises(ModelNotFound):
        invoke_raw("rm", "nothing")
    with pytest.raises(ModelNotFound):
        invoke_raw("show", "nothing")
    assert [m.name for m in Cove(Settings.from_env()).models()] == ["my-model:latest"]


def test_create_from_recipe_file(tiny_store: Cove, tmp_path: Path) -> None:
    recipe = tmp_path / "r.recipe"
    recipe.write_text('FROM tiny\nSYSTEM "be brief"\nPARAMETER temperature 0.3\n')
    assert "created 'brief:latest'" in invoke("create", "brief", "-f", str(recipe)).stdout
    made = tiny_store.model("brief").recipe_obj()
    assert made.system == "be brief"
    assert made.parameters == {"temperature": 0.3}


def test_create_errors_name_the_line(
    tiny_store: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.recipe"
    recipe.write_text("FROM tiny  # my base\nADAPTER ./lora.gguf\n")
    code, _, err = run_main(monkeypatch, capsys, "create", "x", "-f", str(recipe))
    assert code == 1
    assert err == (
        "Error: r.recipe line 2: ADAPTER './lora.gguf': no such file "
        "(paths are relative to the recipe's folder)\n"
    )
    recipe.write_text("# typo below\nFROM tinyy # my base\n")
    code, _, err = run_main(monkeypatch, capsys, "create", "x", "-f", str(recipe))
    assert code == 1
    assert err.startswith("Error: r.recipe line 2: FROM: model 'tinyy") and err.count("\n") == 1
    recipe.write_text("FROM tiny # my base\n")
    code, out, _ = run_main(monkeypatch, capsys, "create", "x", "-f", str(recipe))
    assert code == 0 and "created 'x:latest'" in out


def test_main_prints_one_line_errors(
    tiny_store: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(monkeypatch, capsys, "rm", "nothing")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("Error: model 'nothing:latest' not found")

    recipe = tmp_path / "bad.recipe"
    recipe.write_text("FROM tiny\nPARAMETER temperature hot\n")
    code, _, err = run_main(monkeypatch, capsys, "create", "x", "-f", str(recipe))
    assert code == 1
    assert err.startswith("Error: bad.recipe line 2:") and err.count("\n") == 1

    code, _, err = run_main(monkeypatch, capsys, "create", "x", "-f", str(tmp_path / "missing.recipe"))
    assert code == 1
    assert err.startswith("Error: cannot read recipe missing.recipe")
    assert str(tmp_path) not in err  # no absolute paths of the user's files

    code, _, err = run_main(monkeypatch, capsys, "stop", "tiny")
    assert code == 1 and "not loaded" in err

    code, _, err = run_main(monkeypatch, capsys, "rm")
    assert code == 2 and "Traceback" not in err  # click's usage error


# -- cove run, in process on the fake engine -------------------------------------------------


def test_run_one_shot(tiny_store: Cove, on_fake: FakeEngine) -> None:
    result = invoke("run", "tiny", "hello", "there", "--system", "be terse", input="")
    assert result.stdout == "You said: hello there\n"
    body = on_fake.requests[-1]
    assert body["messages"][0] == {"role": "system", "content": "be terse"}
    assert on_fake.loads[-1].num_parallel == 1  # a terminal needs one slot


def test_run_piped(tiny_store: Cove, on_fake: FakeEngine) -> None:
    assert invoke("run", "tiny", input="from a pipe\n").stdout == "You said: from a pipe\n"
    assert invoke("run", "tiny", "Summarize:", input="text\n").stdout == "You said: Summarize:\ntext\n"


def test_run_verbose_reports_speed(tiny_store: Cove, on_fake: FakeEngine) -> None:
    result = invoke("run", "tiny", "hi", "--verbose", input="")
    assert "tokens/s" in result.stderr
    assert "tokens/s" not in result.stdout


def test_run_errors(tiny_store: Cove, on_fake: FakeEngine) -> None:
    with pytest.raises(ModelNotFound):
        CliRunner().invoke(cli, ["run", "nothing", "hi"], input="", catch_exceptions=False)
    result = CliRunner().invoke(cli, ["run", "tiny"], input="   \n")
    assert "nothing to answer" in str(result.exception)
    assert on_fake.requests == []


# -- the interactive chat --------------------------------------------------------------------


def test_repl_set_show_chat_save(
    fake_cove: Cove,
    engine: FakeEngine,
    history: History,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed(
        monkeypatch,
        [
            "/set system be terse",
            "/set parameter temperature 0.2",
            "/show",
            "hello",
            "/save saved-chat",
            "/bye",
            "never read",
        ],
    )
    repl(fake_cove, Session(model="tiny", history=history), verbose=False)
    out = capsys.readouterr().out
    assert "system: be terse" in out
    assert "'temperature': 0.2" in out
    assert "You said: hello" in out
    assert "Saved as 'saved-chat:latest'." in out

    sent = engine.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "be terse"}
    assert sent["temperature"] == 0.2

    recipe = fake_cove.model("saved-chat").recipe_obj()
    assert recipe.system == "be terse"
    assert recipe.parameters == {"temperature": 0.2}
    assert recipe.messages == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "You said: hello"},
    ]
    # The saved chat carries on where it stopped.
    fake_cove.chat("saved-chat", [{"role": "user", "content": "again"}])
    assert [m["content"] for m in engine.requests[-1]["messages"]] == [
        "be terse",
        "hello",
        "You said: hello",
        "again",
    ]


def test_repl_multiline_errors_and_eof(
    fake_cove: Cove,
    engine: FakeEngine,
    history: History,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feed(
        monkeypatch,
        [
            "/set parameter bogus 1",
            "/set parameter temperature NaN",
            "/nonsense",
            "",
            '"""first line',
            'second line"""',
            "/clear",
            "after clear",
        ],
    )
    session = Session(model="tiny", history=history)
    repl(fake_cove, session, verbose=False)
    captured = capsys.readouterr()
    assert captured.err.count("Error: ") == 2
    assert "unknown parameter 'bogus'" in captured.err
    assert "Unknown command '/nonsense'" in captured.out
    assert session.options == {}
    assert engine.requests[0]["messages"] == [{"role": "user", "content": "first line\nsecond line"}]
    assert engine.requests[1]["messages"] == [{"role": "user", "content": "after clear"}]
    assert len(engine.requests) == 2
    # /clear left the first conversation in the history and started another.
    assert sorted(row.message_count for row in history.list()) == [2, 2]


def test_repl_stop_parameter_accumulates(
    fake_cove: Cove, engine: FakeEngine, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed(monkeypatch, ["/set parameter stop <a>", "/set parameter stop <b>", "hi"])
    session = Session(model="tiny", history=history)
    repl(fake_cove, session, verbose=False)
    assert session.options == {"stop": ["<a>", "<b>"]}
    assert engine.requests[-1]["stop"] == ["<a>", "<b>"]


# -- real processes --------------------------------------------------------------------------


def test_process_import_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"definitely not a model")
    done = cove_process("import", str(bad))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert done.stdout == ""

    debug = cove_process("--debug", "import", str(bad))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("Error:")


def test_process_store_commands(tiny_store: Cove) -> None:
    listed = cove_process("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)] == ["tiny:latest"]

    available = cove_process("list", "--available", COLUMNS="200")
    assert available.returncode == 0
    assert "smollm2:135m" in available.stdout

    shown = cove_process("show", "tiny", "--json")
    assert json.loads(shown.stdout)["info"]["architecture"] == "llama"

    missing = cove_process("rm", "nothing")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("Error:")


@pytest.mark.model
def test_process_run_real_model(real_home: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "short.recipe"
    recipe.write_text("FROM gemma3:270m\nPARAMETER num_predict 8\nPARAMETER temperature 0\n")
    created = cove_process("create", "short", "-f", str(recipe))
    assert created.returncode == 0, created.stderr

    ran = cove_process("run", "short", "Hello", "--verbose")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()
    assert "tokens/s" in ran.stderr
    assert "Traceback" not in ran.stderr

    piped = cove_process("run", "short", stdin="Hello\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == ran.stdout  # greedy: the same prompt gives the same answer
