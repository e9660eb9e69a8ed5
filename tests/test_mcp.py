"""MCP servers over streamable HTTP (a loopback server the test starts) and through the egress gate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_fixtures import free_port, wait_for

from cove.config import Settings
from cove.tools.catalog import ToolCatalog
from cove.tools.mcp_client import server_tools
from cove.tools.mcp_config import McpServer
from cove.tools.registry import run_tool

pytest.importorskip("mcp")

HTTP_SERVER = textwrap.dedent(
    '''
    import sys
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("facts")

    @app.tool()
    def capital(country: str) -> str:
        """The capital of a country."""
        return {"France": "Paris"}.get(country, "unknown")

    app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    '''
)


@pytest.fixture(scope="module")
def http_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("mcp") / "facts.py"
    script.write_text(HTTP_SERVER)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/mcp"

    def up() -> bool:
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.TransportError:
            return process.poll() is not None

    try:
        wait_for(up, what="the MCP server to listen")
        assert process.poll() is None, "the MCP server did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_http_servers_tools_are_listed_and_called(http_mcp: str) -> None:
    tools = server_tools(McpServer("facts", url=http_mcp))
    assert [t.name for t in tools] == ["facts__capital"]
    assert tools[0].source == "mcp:facts" and tools[0].network
    assert tools[0].feature == "mcp:facts"
    outcome = run_tool(tools[0], {"country": "France"})
    assert (outcome.ok, outcome.text) == (True, "Paris")


def test_a_server_that_is_down_is_reported_and_the_built_ins_stay(cove_home: Path) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    (cove_home / "mcp.json").write_text(json.dumps({"servers": {"gone": {"url": dead}}}))
    catalog = ToolCatalog(Settings.from_env())
    names = catalog.registry().names()
    assert {"calculator", "current_time"} <= set(names)
    assert not any(name.startswith("gone__") for name in names)
    assert "MCP server gone failed" in catalog.problems()["gone"]


def test_an_http_server_off_this_machine_is_refused_by_the_gate_before_any_connection(
    cove_home: Path,
) -> None:
    cove_home.mkdir(parents=True, exist_ok=True)
    # 192.0.2.0/24 is TEST-NET-1: nothing answers there, and the gate refuses before trying.
    (cove_home / "mcp.json").write_text(json.dumps({"servers": {"far": {"url": "http://192.0.2.7/mcp"}}}))
    catalog = ToolCatalog(Settings.from_env())
    problem = catalog.problems()["far"]
    assert "tool mcp:far is off" in problem and "cove tools enable mcp:far" in problem


def test_enabling_an_mcp_server_by_name_opens_the_gate_for_its_host(
    cove_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import run_main

    from cove.net import gate

    cove_home.mkdir(parents=True, exist_ok=True)
    (cove_home / "mcp.json").write_text(json.dumps({"servers": {"far": {"url": "http://192.0.2.7/mcp"}}}))
    with pytest.raises(gate.EgressRefused):
        gate.current().allow("mcp:far", "192.0.2.7", 80)
    code, out, _ = run_main(monkeypatch, capsys, "tools", "enable", "far", "--allow", "192.0.2.7")
    assert (code, out) == (0, "mcp:far is on for 192.0.2.7.\n")
    with gate.current().allow("mcp:far", "192.0.2.7", 80) as permit:  # allowed now: nothing connects
        assert "allow-list" in permit.reason


def test_a_server_that_comes_up_later_is_listed_on_a_later_look(
    cove_home: Path, http_mcp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cove.tools import catalog as catalog_module

    cove_home.mkdir(parents=True, exist_ok=True)
    config = cove_home / "mcp.json"
    config.write_text(json.dumps({"servers": {"facts": {"url": f"http://127.0.0.1:{free_port()}/mcp"}}}))
    catalog = ToolCatalog(Settings.from_env())
    assert "facts" in catalog.problems()
    config.write_text(json.dumps({"servers": {"facts": {"url": http_mcp}}}))  # edited: read again
    monkeypatch.setattr(catalog_module, "RETRY_S", 0.0)
    assert "facts__capital" in catalog.registry().names()
    assert catalog.problems() == {}


def test_an_http_servers_every_request_goes_through_the_gate_with_its_bytes(
    cove_home: Path, http_mcp: str
) -> None:
    """No blanket permit: each request the SDK sends is a gate request, counted in the ledger."""
    from cove.net import gate

    egress = gate.install(Settings.from_env())
    (tool,) = server_tools(McpServer("facts", url=http_mcp), egress.settings)
    assert run_tool(tool, {"country": "France"}).text == "Paris"
    rows = [e for e in egress.ledger.entries() if e.feature == "mcp:facts"]
    assert len(rows) == 2  # one client for the listing, one for the call: a row each
    for row in rows:
        assert (row.host, row.decision, row.loopback) == ("127.0.0.1", "allowed", True)
        assert row.bytes_sent > 200 and row.bytes_received > 100 and row.ended_at is not None


def test_a_stdio_server_declared_as_a_network_program_starts(cove_home: Path, tmp_path: Path) -> None:
    """`uv run server.py` is common: the backstop lets the very command the user declared start."""
    script = tmp_path / "facts_stdio.py"
    script.write_text(
        HTTP_SERVER.replace(
            'app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))', "app.run()"
        )
    )
    launcher = tmp_path / "bin" / "uv"  # named like uv, the way `uv run` starts a server
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\nshift\nexec {sys.executable} "$@"\n')
    launcher.chmod(0o755)
    server = McpServer("facts", command=str(launcher), args=("run", str(script)))
    (tool,) = server_tools(server)
    assert run_tool(tool, {"country": "France"}).text == "Paris"
    # Any other start of that program is still refused: only the declared command passes.
    from cove.net import audit
    from cove.net.gate import EgressRefused

    with audit.expect_refusals(), pytest.raises(EgressRefused, match="uv reaches the network"):
        subprocess.run([str(launcher), "run", "other.py"], check=False)
