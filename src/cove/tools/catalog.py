"""Every tool one cove knows: the built-in ones, and the tools of the MCP servers in its config.

MCP servers are listed lazily (starting a stdio server costs a process), once per catalog; a
server that cannot be reached is reported by `problems()` and its tools are simply absent.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .registry import Registry, Tool, builtin_tools

if TYPE_CHECKING:
    from ..config import Settings


class ToolCatalog:
    """Builds the registry on first use; `refresh()` lists the MCP servers again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                self._registry = Registry([*builtin_tools(), *self._mcp_tools()])
            return self._registry

    def refresh(self) -> Registry:
        with self._lock:
            self._registry = None
        return self.registry()

    def problems(self) -> dict[str, str]:
        """The MCP servers whose tools could not be listed, and why."""
        self.registry()
        return dict(self._problems)

    def _mcp_tools(self) -> list[Tool]:
        from .mcp_config import load_servers

        servers = load_servers(self.settings)
        if not servers:
            return []
        from .mcp_client import server_tools

        tools: list[Tool] = []
        self._problems = {}
        for server in servers:
            try:
                tools.extend(server_tools(server, self.settings))
            except Exception as exc:  # one server down must not hide the others or the built-ins
                self._problems[server.name] = str(exc) or type(exc).__name__
        return tools
