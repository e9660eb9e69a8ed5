"""`cove tools` and its subcommands, MCP servers from the config, and the consent prompt of `cove run`."""

from __future__ import annotations

import json
import os
import select
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_helpers import _workdir, run_main
from server_fixtures import wait_for
from tool_fakes import ToolScriptEngine

from cove.cli import main as main_module
from cove.config import Settings
from cove.library.local import Cove
from cove.tools import policy
from cove.tools.events import ToolEvent

__all__ = ["_workdir"]

MCP_SERVER = textwrap.dedent(
    '''
    import os
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("notes")

    @app.tool()
    def lookup(word: str) -> str:
        """Look a word up in the notes."""
        return f"notes about {word}"

    @app.tool()
    def stall() -> str:
        """Never answers."""
        import time
        time.sleep(600)
        return "late"

    @app.tool()
    def vanish() -> str:
        """Exits in the middle of the call."""
        os._exit(3)

    app.run()
    '''
)


@pytest.fixture
def mcp_home(cove_home: Path, tmp_path: Path) -> Path:
    pytest.importorskip("mcp")
    script = tmp_path / "notes_server.py"
    script.write_text(MCP_SERVER)
    cove_home.mkdir(parents=True, exist_ok=True)
    config = {"servers": {"notes": {"command": sys.executable, "args": [str(script)]}}}
    (cove_home / "mcp.json").write_text(json.dumps(config))
    return cove_home


def test_tools_lists_every_tool_off_until_enabled(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(monkeypatch, capsys, "tools")
    assert code == 0 and "calculator" in out and "current_time" in out
    assert "Every tool is off" in err
    code, out, _ = run_main(monkeypatch, capsys, "tools", "enable", "calculator")
    assert (code, out) == (0, "calculator is on.\n")
    code, out, _ = run_main(monkeypatch, capsys, "tools", "--json")
    rows = {r["name"]: r for r in json.loads(out)["tools"]}
    assert rows["calculator"]["enabled"] is True and rows["current_time"]["enabled"] is False
    code, out, _ = run_main(monkeypatch, capsys, "tools", "disable", "calculator")
    assert (code, out) == (0, "calculator is off.\n")
    assert not policy.load(cove_home).enabled("calculator")


def test_enable_keeps_an_allow_list_and_refuses_unknown_names(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "tools", "enable", "current_time", "--allow", "Example.ORG.")
    assert (code, out) == (0, "current_time is on for example.org.\n")
    run_main(monkeypatch, capsys, "tools", "disable", "current_time")
    assert policy.load(cove_home).state("current_time").allow == ("example.org",)
    code, _, err = run_main(monkeypatch, capsys, "tools", "enable", "nope")
    assert code == 1 and "no tool or MCP server named 'nope'" in err


def test_tools_run_runs_one_under_the_same_rules(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "tools", "run", "calculator", '{"expression": "1+1"}')
    assert code == 1 and "switched off" in err
    policy.enable(cove_home, "calculator")
    code, out, _ = run_main(monkeypatch, capsys, "tools", "run", "calculator", '{"expression": "2**64"}')
    assert (code, out) == (0, "18446744073709551616\n")
    code, _, err = run_main(monkeypatch, capsys, "tools", "run", "calculator", "{oops")
    assert code == 1 and "not JSON" in err


# -- MCP ---------------------------------------------------------------------------------------


def test_an_mcp_servers_tools_are_listed_beside_the_built_in_ones(
    mcp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "tools", "--json")
    rows = {r["name"]: r for r in json.loads(out)["tools"]}
    assert rows["notes__lookup"]["source"] == "mcp:notes"
    assert rows["notes__lookup"]["enabled"] is False
    run_main(monkeypatch, capsys, "tools", "enable", "notes__lookup")
    code, out, _ = run_main(monkeypatch, capsys, "tools", "run", "notes__lookup", '{"word": "otter"}')
    assert (code, out) == (0, "notes about otter\n")


def test_an_mcp_server_that_exits_mid_call_is_a_tool_error_and_the_chat_goes_on(mcp_home: Path) -> None:
    from gguf_writer import write_gguf

    from cove.chat.service import TurnRequest

    policy.enable(mcp_home, "notes__vanish")
    policy.enable(mcp_home, "notes__lookup")
    engine = ToolScriptEngine(script=[[("notes__vanish", {})], "sorry", [("notes__lookup", {"word": "a"})]])
    with Cove(Settings.from_env(), factory=engine) as cove:
        cove.store.import_gguf(write_gguf(mcp_home.parent / "tiny.gguf"), "tiny", source="test")
        named = ["notes__vanish", "notes__lookup"]
        hi = [{"role": "user", "content": "hi"}]
        first = cove.chat_turn(TurnRequest("tiny", hi, conversation="new", cove_tools=named))
        events = list(first)
        failed = [e for e in events if isinstance(e, ToolEvent)]
        assert [(e.kind, e.name) for e in failed] == [("error", "notes__vanish")]
        assert "MCP server notes failed" in failed[0].message
        assert "".join(e.content for e in events) == "sorry"
        again = TurnRequest("tiny", hi, conversation=first.conversation_id, cove_tools=named)
        answer = cove.conversations.run(cove.conversations.prepare(again))
        assert answer.content == "Tool said: notes about a"


def test_an_mcp_tool_that_hangs_is_stopped_and_its_server_with_it(
    mcp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import psutil

    policy.enable(mcp_home, "notes__stall")
    monkeypatch.setenv("COVE_TOOL_TIMEOUT", "3")
    started = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, "tools", "run", "notes__stall")
    assert time.monotonic() - started < 15
    assert code == 1 and ("notes__stall took longer than 3 s" in err or "did not answer within" in err)

    def server_left() -> bool:
        for child in psutil.Process().children(recursive=True):
            try:
                if "notes_server.py" in " ".join(child.cmdline()):
                    return True
            except psutil.Error:  # gone, or a zombie: stopped, not yet reaped
                continue
        return False

    wait_for(lambda: not server_left(), timeout=10, what="the stalled MCP server to be stopped")


def test_a_broken_mcp_config_says_which_line_to_fix(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    (cove_home / "mcp.json").write_text('{"servers": {"x": {"command": "a", "url": "http://b"}}}')
    code, _, err = run_main(monkeypatch, capsys, "tools")
    assert code == 1 and "needs exactly one of command (stdio) or url" in err


# -- the consent prompt in `cove run`, on a real terminal --------------------------------------


def read_until(fd: int, marker: bytes, seconds: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while marker not in data and time.monotonic() < deadline:
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
@pytest.mark.parametrize(
    ("answers", "asked"),
    [([b"y\n"], 2), ([b"n\n"], 2), ([b"a\n"], 1)],
    ids=["yes", "no", "always"],
)
def test_cove_run_asks_before_each_tool_call(
    cove_home: Path, tmp_path: Path, answers: list[bytes], asked: int
) -> None:
    """yes runs it; no sends the model a refusal; always runs it and does not ask again."""
    import pty

    from gguf_writer import write_gguf

    policy.enable(cove_home, "calculator")
    with Cove(Settings.from_env()) as store:
        store.store.import_gguf(write_gguf(tmp_path / "tiny.gguf"), "tiny", source="test")
    results = tmp_path / "results.json"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI on a terminal, the scripted model in-process
        try:
            # pytest's capture is inherited: give the CLI the terminal as its standard streams.
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            call = [("calculator", {"expression": "6*7"})]
            engine = ToolScriptEngine(script=[call, "first done", call])
            main_module.Cove = lambda settings: Cove(settings, factory=engine)  # type: ignore[misc]
            sys.argv = ["cove", "--local", "run", "tiny"]
            try:
                main_module.main()
            finally:
                told = [
                    m["content"] for r in engine.requests for m in r["messages"][-1:] if m["role"] == "tool"
                ]
                results.write_text(json.dumps(told))
        finally:
            os._exit(0)
    screen = read_until(fd, b">>> ")
    os.write(fd, b"what is 6*7?\n")
    screen += read_until(fd, b"[a]lways for this tool: ")
    assert b'The model wants to run the tool calculator with {"expression": "6*7"}' in screen
    os.write(fd, answers[0])
    screen += read_until(fd, b">>> ")
    os.write(fd, b"and again?\n")
    screen += read_until(fd, b">>> " if answers[0] == b"a\n" else b"for this tool: ")
    if answers[0] != b"a\n":
        os.write(fd, answers[0])
        screen += read_until(fd, b">>> ")
    os.write(fd, b"\x04")
    screen += read_until(fd, b"\x00", seconds=10)
    os.waitpid(pid, 0)
    told = json.loads(results.read_text())
    assert screen.count(b"Run it? [y]es, [n]o, [a]lways") == asked, screen
    if answers[0] == b"n\n":
        assert len(told) == 2, screen
        assert all(t.startswith("error: the user did not allow calculator") for t in told), screen
        assert b"(calculator not run)" in screen
    else:
        assert told == ["42", "42"], screen
        assert b"Tool said: 42" in screen and b"(calculator ran)" in screen


# -- `cove run` through a running server -------------------------------------------------------


def test_cove_run_through_a_server_asks_and_the_server_runs_the_tool(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import feed
    from server_fixtures import LiveServer, make_app, tiny_cove

    policy.enable(cove_home, "calculator")
    engine = ToolScriptEngine(script=[[("calculator", {"expression": "6*7"})]])
    served = tiny_cove(cove_home, engine)
    feed(monkeypatch, ["y"])  # the consent prompt's answer
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    with LiveServer(make_app(served)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        code, out, err = run_main(monkeypatch, capsys, "run", "tiny", "what is 6*7?")
    served.close()
    assert code == 0, err
    assert "The model wants to run the tool calculator" in err
    assert out.strip() == "Tool said: 42"


def test_tools_shows_each_mcp_server_and_whether_the_gate_covers_it(
    mcp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((mcp_home / "mcp.json").read_text())
    config["servers"]["far"] = {"url": "http://192.0.2.7/mcp"}
    (mcp_home / "mcp.json").write_text(json.dumps(config))
    code, out, _ = run_main(monkeypatch, capsys, "tools", "--json")
    servers = {s["name"]: s for s in json.loads(out)["mcp_servers"]}
    assert servers["mcp:notes"]["transport"] == "stdio" and servers["mcp:notes"]["gated"] is False
    assert servers["mcp:far"]["gated"] is True and "cove tools enable mcp:far" in servers["mcp:far"]["error"]
    code, _, err = run_main(monkeypatch, capsys, "tools")
    assert code == 0 and "mcp:notes:" in err and "outside cove's gate" in err


def test_tool_text_is_shown_as_it_is_on_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """A tool's output or a model's arguments cannot restyle the terminal or turn into emoji."""
    from cove.cli.chat import Session, tool_step

    session = Session(model="tiny", history=None)  # type: ignore[arg-type]
    failed = ToolEvent(kind="error", name="calc", message="[red]boom[/red] :smile:")
    tool_step(None, session, failed)  # type: ignore[arg-type]  (shows it; needs no backend)
    assert "(calc failed: [red]boom[/red] :smile:)" in capsys.readouterr().err


def test_allow_any_host_is_said_plainly_and_the_gate_lets_any_public_host_through(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cove.net import gate
    from cove.tools.fetch_url import TOOL as FETCH
    from cove.tools.registry import run_tool

    code, out, _ = run_main(monkeypatch, capsys, "tools", "enable", "fetch_url", "--allow", "*")
    assert (code, out) == (0, "fetch_url is on for any public internet host.\n")
    code, out, _ = run_main(monkeypatch, capsys, "--local", "privacy", "--json")
    (rule,) = [r for r in json.loads(out)["rules"] if r["feature"] == "tool:fetch_url"]
    assert (rule["allowed"], rule["to"]) == (True, "any public internet host")
    code, out, _ = run_main(monkeypatch, capsys, "--local", "privacy")
    assert "any public internet host" in out
    with gate.allow("tool:fetch_url", "news.example", 443) as permit:  # judged only: nothing is sent
        assert "any host" in permit.reason
    # The address checks still hold: a private address is refused before any connection.
    outcome = run_tool(FETCH, {"url": "http://10.1.2.3/"})
    assert not outcome.ok and "10.1.2.3 is private" in outcome.text
    code, _, err = run_main(monkeypatch, capsys, "tools", "enable", "fetch_url", "--allow", "https://x.org/")
    assert code == 1 and "not a URL" in err
