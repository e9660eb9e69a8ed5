"""Every tool with its state, as `cove tools` and `GET /api/cove/tools` show it, and the MCP servers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mcp_config import load_servers
from .policy import load

if TYPE_CHECKING:
    from .catalog import ToolCatalog


def tool_rows(catalog: ToolCatalog) -> list[dict[str, Any]]:
    """One row per known tool (built-in and MCP)."""
    policy = load(catalog.settings.home)
    rows: list[dict[str, Any]] = []
    for tool in catalog.registry().all():
        state = policy.state(tool.name)
        rows.append(
            {
                "name": tool.name,
                "description": tool.description,
                "source": tool.source,
                "network": tool.network,
                "enabled": state.enabled,
                "allow": list(state.allow),
                "parameters": tool.parameters,
            }
        )
    return rows


def server_rows(catalog: ToolCatalog) -> list[dict[str, Any]]:
    """One row per declared MCP server: how it is reached, its gate switch, and any listing error."""
    policy = load(catalog.settings.home)
    problems = catalog.problems()
    rows = []
    for server in load_servers(catalog.settings):
        state = policy.state(server.feature)
        row: dict[str, Any] = {
            "name": server.feature,
            "transport": "http" if server.url else "stdio",
            "target": server.describe(),
            # A command runs as its own program: what it connects to is outside cove's gate.
            "gated": bool(server.url),
            "enabled": state.enabled,
            "allow": list(state.allow),
        }
        if server.name in problems:
            row["error"] = problems[server.name]
        rows.append(row)
    return rows
