"""Every tool with its state, as `cove tools` and `GET /api/cove/tools` show it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mcp_config import SEPARATOR
from .policy import load

if TYPE_CHECKING:
    from .catalog import ToolCatalog


def tool_rows(catalog: ToolCatalog) -> list[dict[str, Any]]:
    """One row per known tool (built-in and MCP), then one per MCP server that could not be listed."""
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
    for server, problem in catalog.problems().items():
        rows.append({"name": f"{server}{SEPARATOR}*", "source": f"mcp:{server}", "error": problem})
    return rows
