"""`cove privacy`, `cove privacy log` and GET /api/cove/privacy: in process and through `cove serve`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from fakes import FakeEngine
from server_fixtures import (
    RealServer,
    _wait_until_up,
    anyio_backend,
    client,
    cove_script,
    free_port,
    make_app,
    tiny_cove,
)

from cove.cli.main import cli
from cove.config import Settings
from cove.net import gate
from cove.net.ledger import Ledger

__all__ = ["anyio_backend"]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(
        cli, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False
    )
    return result


def record_refusal(home: Path, host: str = "tracker.example") -> None:
    ledger = Ledger(home)
    ledger.record("tool:web_search", host, 443, "refused", "tool web_search is off")
    ledger.close()


def record_pull(home: Path) -> None:
    ledger = Ledger(home)
    row = ledger.record("pull", "huggingface.co", 443, "allowed", "a model you asked for by name")
    ledger.finish(row, 1200, 5_000_000, "18.1.2.3")
    ledger.close()


# -- the CLI in this process ---------------------------------------------------------------


def test_privacy_prints_the_policy() -> None:
    result = run("--local", "privacy")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "only for what you ask for by name" in out
    assert "pull" in out and "huggingface.co" in out and "pypi.org" in out
    assert "every tool is off until you switch it on" in out
    assert "outside cove's process" in out  # an MCP stdio server's own network use
    assert "The ledger is empty: nothing has left this machine." in out


def test_privacy_json_shows_enabled_tools_and_their_hosts(cove_home: Path) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    rules = {"tools": {"web_search": {"enabled": True, "allow": ["search.example.org"]}}}
    (cove_home / "tools.json").write_text(json.dumps(rules))
    policy = json.loads(run("--local", "privacy", "--json").output)
    assert policy["offline"] is False
    (tool,) = [r for r in policy["rules"] if r["feature"] == "tool:web_search"]
    assert tool == {
        "feature": "tool:web_search",
        "allowed": True,
        "to": "search.example.org",
        "why": "switched on with `cove tools enable`",
    }


def test_offline_flag_and_setting_close_every_way_out(cove_home: Path) -> None:
    for args, env in [(["--offline"], {}), ([], {"COVE_OFFLINE": "1"})]:
        policy = json.loads(run("--local", *args, "privacy", "--json", env=env).output)
        assert policy["offline"] is True
        assert "not even for `cove pull`" in policy["summary"]
        (pull,) = [r for r in policy["rules"] if r["feature"] == "pull"]
        assert pull["allowed"] is False


def test_pull_offline_is_one_clear_line(cove_home: Path) -> None:
    result = CliRunner().invoke(cli, ["--offline", "pull", "hf.co/acme/tiny"])
    assert result.exit_code != 0
    assert "offline (COVE_OFFLINE=1 or --offline): cove pull fetches nothing" in str(result.exception)
    (entry,) = Ledger(cove_home).entries()
    assert (entry.feature, entry.decision, entry.host) == ("pull", "refused", "huggingface.co")


def test_log_json_empty_then_with_entries(cove_home: Path) -> None:
    empty = json.loads(run("--local", "privacy", "log", "--json").output)
    assert empty["entries"] == [] and empty["left_machine"] == 0
    assert empty["verdict"] == "The ledger is empty: nothing has left this machine."
    record_refusal(cove_home)
    refused = json.loads(run("--local", "privacy", "log", "--json").output)
    assert refused["verdict"] == "Nothing has left this machine (1 attempt(s) refused)."
    (entry,) = refused["entries"]
    assert (entry["host"], entry["decision"], entry["bytes_sent"]) == ("tracker.example", "refused", 0)
    record_pull(cove_home)
    both = json.loads(run("--local", "privacy", "log", "--json").output)
    assert both["left_machine"] == 1
    assert both["verdict"] == "1 connection(s) left this machine: 1200 bytes sent, 5000000 received."
    assert [e["feature"] for e in both["entries"]] == ["pull", "tool:web_search"]  # newest first


def test_log_days_and_table(cove_home: Path) -> None:
    record_pull(cove_home)
    ledger = Ledger(cove_home)
    ledger._open().conn.execute("UPDATE egress SET at = '2020-01-01T00:00:00.000000+00:00'")
    ledger.close()
    record_refusal(cove_home)
    recent = json.loads(run("--local", "privacy", "log", "--days", "7", "--json").output)
    assert [e["host"] for e in recent["entries"]] == ["tracker.example"]
    table = run("--local", "privacy", "log").output
    assert "tracker.example" in table and "huggingface.co" in table and "5.0 MB" in table
    assert run("--local", "privacy", "log", "--days", "0").exit_code == 2


def test_the_ledger_never_holds_prompt_text(cove_home: Path) -> None:
    """Only where, for what, bytes and why: a URL's path and query (where text could ride) never."""
    egress = gate.install(Settings.from_env())
    with pytest.raises(gate.EgressRefused), gate.client("tool:fetch_url") as http:
        http.get("http://tracker.example/log?q=my+secret+prompt")
    text = json.dumps([e.to_dict() for e in egress.ledger.entries()])
    assert "tracker.example" in text
    assert "secret" not in text and "/log" not in text


# -- the API in process ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_privacy_in_process(cove_home: Path, engine: FakeEngine) -> None:
    cove = tiny_cove(cove_home, engine)
    try:
        async with client(make_app(cove)) as http:
            empty = (await http.get("/api/cove/privacy")).json()
            assert empty["policy"]["offline"] is False
            assert empty["ledger"] == {
                "verdict": "The ledger is empty: nothing has left this machine.",
                "count": 0,
                "left_machine": 0,
                "refused": 0,
                "entries": [],
            }
            record_refusal(cove_home)
            one = (await http.get("/api/cove/privacy", params={"days": "1", "limit": "5"})).json()
            assert [e["host"] for e in one["ledger"]["entries"]] == ["tracker.example"]
            for bad in ({"days": "-1"}, {"days": "nan"}, {"days": "x"}, {"limit": "0"}, {"limit": "99999"}):
                response = await http.get("/api/cove/privacy", params=bad)
                assert response.status_code == 400, bad
    finally:
        cove.close()


@pytest.mark.anyio
async def test_api_privacy_reports_this_store_and_an_installed_offline_gate_holds(
    cove_home: Path, engine: FakeEngine, tmp_path: Path
) -> None:
    """A gate installed for another home is not this store's ledger, but its --offline still holds."""
    gate.install(Settings.from_env().replace(home=tmp_path / "elsewhere", offline=True))
    record_refusal(cove_home)
    cove = tiny_cove(cove_home, engine)
    try:
        async with client(make_app(cove)) as http:
            report = (await http.get("/api/cove/privacy")).json()
    finally:
        cove.close()
    assert [e["host"] for e in report["ledger"]["entries"]] == ["tracker.example"]
    assert report["policy"]["offline"] is True


# -- through a running `cove serve` -------------------------------------------------------------


@pytest.fixture
def offline_server(tmp_path: Path) -> Iterator[RealServer]:
    """`cove serve --offline` on an empty store: no model is needed to answer about privacy."""
    home = tmp_path / "served-home"
    # Not COVE_*, so EGRESS_AUDIT_REPORT stays: the server's hook reports to this session's check.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_") and k != "HF_TOKEN"}
    env["COVE_HOME"] = str(home)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(cove_script()), "serve", "--offline", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    real = RealServer(f"http://127.0.0.1:{port}", home, process, log)
    try:
        _wait_until_up(real)
        yield real
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_cli_asks_the_running_server(offline_server: RealServer, monkeypatch: pytest.MonkeyPatch) -> None:
    port = offline_server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("COVE_HOST", f"127.0.0.1:{port}")
    # This process is not offline; the server is, and its answer is the one shown.
    policy = json.loads(run("privacy", "--json").output)
    assert policy["offline"] is True
    record_refusal(offline_server.home, "served.example")
    ledger: dict[str, Any] = json.loads(run("privacy", "log", "--json").output)
    assert [e["host"] for e in ledger["entries"]] == ["served.example"]
    assert "offline" in run("privacy").output.lower()
    direct = httpx.get(offline_server.url + "/api/cove/privacy", timeout=10).json()
    assert direct["policy"]["offline"] is True
    assert direct["ledger"]["entries"][0]["host"] == "served.example"


# -- the real command, end to end ---------------------------------------------------------------


def cove_command(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COVE_") and k != "HF_TOKEN"}
    environment.update({"COVE_HOME": str(home), "COVE_HOST": "127.0.0.1:1", **env})
    return subprocess.run(
        [str(cove_script()), *args], env=environment, capture_output=True, text=True, timeout=120
    )


def test_cove_pull_is_in_the_ledger_and_offline_refuses_it(tmp_path: Path) -> None:
    from fake_hf import FakeHF
    from gguf_writer import make_gguf

    home = tmp_path / "home"
    data = make_gguf({"general.architecture": "llama"}) + bytes(50_000)
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", data)
        pulled = cove_command(home, "pull", "hf.co/acme/Tiny-GGUF", COVE_HF_ENDPOINT=hub.url)
        assert pulled.returncode == 0, pulled.stderr
        offline = cove_command(
            home, "pull", "hf.co/acme/Tiny-GGUF:Q8_0", COVE_HF_ENDPOINT=hub.url, COVE_OFFLINE="1"
        )
        asked = len(hub.requests)
    assert offline.returncode == 1
    error = [line for line in offline.stderr.splitlines() if line.startswith("Error:")]
    port = hub.url.rsplit(":", 1)[1]
    reason = "offline (COVE_OFFLINE=1 or --offline): cove pull fetches nothing; pull without --offline"
    assert len(error) == 1 and error[0].startswith(
        f"Error: cove did not connect to 127.0.0.1:{port} for pull: {reason}"
    )
    log = json.loads(cove_command(home, "privacy", "log", "--json").stdout)
    refused, *allowed = log["entries"]
    assert (refused["feature"], refused["decision"]) == ("pull", "refused")
    assert allowed and all(e["decision"] == "allowed" and e["loopback"] for e in allowed)
    assert sum(e["bytes_received"] for e in allowed) >= len(data)
    assert log["left_machine"] == 0  # a loopback mirror: nothing left the machine
    assert asked == len(hub.requests)  # the offline pull sent nothing


def test_a_tool_that_works_offline_is_shown_as_reaching_nothing(cove_home: Path) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    rules = {"tools": {"current_time": {"enabled": True, "allow": []}, "fetch_url": {"enabled": True}}}
    (cove_home / "tools.json").write_text(json.dumps(rules))
    policy = json.loads(run("--local", "privacy", "--json").output)
    shown = {r["feature"]: (r["allowed"], r["to"]) for r in policy["rules"]}
    assert shown["tool:current_time"] == (False, "nothing")
    assert shown["tool:fetch_url"] == (False, "no host (its allow-list is empty)")


def test_each_stdio_mcp_server_is_listed_as_a_program_of_its_own(cove_home: Path) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    servers = {
        "notes": {"command": "uv", "args": ["run", "notes.py"]},
        "docs": {"command": "npx", "args": ["-y", "docs-server"]},
        "far": {"url": "http://192.0.2.7/mcp"},
        "odd": {"command": "python", "args": ["[red]s.py[/red]", ":smile:"]},
    }
    (cove_home / "mcp.json").write_text(json.dumps({"servers": servers}))
    policy = json.loads(run("--local", "privacy", "--json").output)
    rows = {r["feature"]: r for r in policy["rules"]}
    assert rows["mcp:notes"]["to"] == "its own program: uv run notes.py"
    assert rows["mcp:docs"]["to"] == "its own program: npx -y docs-server"
    for name in ("mcp:notes", "mcp:docs"):
        assert rows[name]["allowed"] is None
        assert "network use is outside cove's process" in rows[name]["why"]
    far = rows["mcp:far"]
    assert (far["allowed"], far["to"]) == (False, "192.0.2.7")
    assert "cove tools enable mcp:far --allow 192.0.2.7" in far["why"]
    out = run("--local", "privacy").output
    assert "its own program: uv run notes.py" in out
    assert "its own program: python [red]s.py[/red] :smile:" in out  # shown as it is, no markup
