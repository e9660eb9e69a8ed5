"""Every tool with its state, as `cove tools` and `GET /api/cove/tools` show it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mcp_config import SEPARATOR

if TYPE_CHECKING:
    from ..chat.service import ChatService


def tool_rows(service: ChatService) -> list[dict[str, Any]]:
    """One row per known tool (built-in and MCP), then one per MCP server that could not be listed."""
    policy = service.tool_policy()
    rows: list[dict[str, Any]] = []
    for tool in service.tool_registry().all():
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
    for server, problem in service.tool_problems().items():
        rows.append({"name": f"{server}{SEPARATOR}*", "source": f"mcp:{server}", "error": problem})
    return rows
