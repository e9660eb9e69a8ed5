"""`cove tools`: every tool (built-in and MCP) with its state; enable, disable, and run one directly.

A tool is off until `cove tools enable NAME`; a tool that reaches the network also needs the
hosts it may reach (`--allow HOST`, repeatable; `*.example.org` for a domain and its sub-domains,
`*` for any public internet host).
`cove tools run NAME 'JSON-ARGS'` runs one as the model would, under the same caps and gate.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..errors import CoveError
from ..net.policy import ANY_HOST
from ..tools import policy
from ..tools.catalog import ToolCatalog
from ..tools.listing import server_rows, tool_rows
from ..tools.mcp_config import load_servers
from ..tools.registry import ToolContext, ToolError, run_tool

out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def tools(ctx: click.Context, as_json: bool) -> None:
    """List the tools a model may call, with their state and allow-lists."""
    if ctx.invoked_subcommand is not None:
        return
    catalog = ToolCatalog(Settings.from_env())
    rows = tool_rows(catalog)
    servers = server_rows(catalog)
    if as_json:
        click.echo(json.dumps({"tools": rows, "mcp_servers": servers}, indent=2))
        return
    table = Table("NAME", "STATE", "SOURCE", "ALLOW", "DESCRIPTION", box=None)
    for row in rows:
        hosts = shown_hosts(row["allow"]) or ("(no host yet)" if row["network"] else "(offline)")
        state = "[green]on[/green]" if row["enabled"] else "off"
        about = escape(row["description"][:70])
        table.add_row(escape(row["name"]), state, row["source"], escape(hosts), about)
    out.print(table)
    for server in servers:
        gate = "through the gate" if server["gated"] else "its own program, outside cove's gate"
        err.print(f"[dim]{escape(server['name'])}: {escape(server['target'])} ({gate})[/dim]")
        if "error" in server:
            err.print(f"[yellow]  its tools could not be listed: {escape(server['error'])}[/yellow]")
    if not any(row["enabled"] for row in rows):
        err.print("[dim]Every tool is off. `cove tools enable NAME` switches one on.[/dim]")


@tools.command()
@click.argument("name")
@click.option(
    "--allow", "hosts", multiple=True, metavar="HOST", help="A host it may reach (repeatable; '*': any)."
)
def enable(name: str, hosts: tuple[str, ...]) -> None:
    """Switch the tool NAME on; `mcp:SERVER` lets an HTTP MCP server's connections through the gate."""
    settings = Settings.from_env()
    catalog = ToolCatalog(settings)
    tool = catalog.registry().find(name)
    servers = {s.name: s for s in load_servers(settings)}
    if tool is None:
        server = name.removeprefix("mcp:")
        if server not in servers:
            known = ", ".join([*catalog.registry().names(), *(f"mcp:{s}" for s in servers)])
            raise ToolError(f"there is no tool or MCP server named {name!r} (known: {known})")
        name = f"mcp:{server}"  # the egress gate's feature for that server's connections
    state = policy.enable(settings.home, name, hosts)
    where = f" for {shown_hosts(state.allow)}" if state.allow else ""
    click.echo(f"{name} is on{where}.")
    if tool is not None and tool.network and not state.allow:
        err.print(f"[yellow]{name} reaches the network: nothing until you add --allow HOST[/yellow]")


def shown_hosts(allow: list[str] | tuple[str, ...]) -> str:
    """An allow-list as a person reads it: `*` is said in words."""
    return ", ".join("any public internet host" if host == ANY_HOST else host for host in allow)


@tools.command()
@click.argument("name")
def disable(name: str) -> None:
    """Switch the tool NAME off (its allow-list is kept)."""
    policy.disable(Settings.from_env().home, name)
    click.echo(f"{name} is off.")


@tools.command("run")
@click.argument("name")
@click.argument("arguments", default="{}")
def run_command(name: str, arguments: str) -> None:
    """Run the tool NAME once with ARGUMENTS (JSON), as a model's call would run."""
    settings = Settings.from_env()
    tool = ToolCatalog(settings).registry().get(name)
    if not policy.load(settings.home).enabled(name):
        raise ToolError.switched_off(name)
    context = ToolContext(settings=settings)
    outcome = run_tool(tool, arguments, context, time_cap_s=settings.tool_timeout_s)
    if not outcome.ok:
        raise CoveError(outcome.text)
    sys.stdout.write(outcome.text + ("" if outcome.text.endswith("\n") else "\n"))
