"""Every tool one cove knows: the built-in ones, and the tools of the MCP servers in its config.

MCP servers are listed lazily (starting a stdio server costs a process) and the listing is kept:
it is made again when the MCP config file changes, and, while some server could not be listed,
at most every RETRY_S seconds, so a server that was down when cove started is picked up once it
is up. A server that cannot be reached is reported by `problems()`; its tools are simply absent.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .mcp_config import config_path
from .registry import Registry, Tool, builtin_tools

if TYPE_CHECKING:
    from ..config import Settings

RETRY_S = 30.0


class ToolCatalog:
    """Builds the registry on first use; `refresh()` lists the MCP servers again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self._problems: dict[str, str] = {}
        self._built_at = 0.0
        self._config_stamp: float | None = None
        self._lock = threading.Lock()

    def registry(self) -> Registry:
        with self._lock:
            stamp = self._stamp()
            stale = stamp != self._config_stamp or (
                self._problems and time.monotonic() - self._built_at > RETRY_S
            )
            if self._registry is None or stale:
                self._registry = Registry([*builtin_tools(), *self._mcp_tools()])
                self._built_at, self._config_stamp = time.monotonic(), stamp
            return self._registry

    def refresh(self) -> Registry:
        with self._lock:
            self._registry = None
        return self.registry()

    def problems(self) -> dict[str, str]:
        """The MCP servers whose tools could not be listed, and why."""
        self.registry()
        return dict(self._problems)

    def _stamp(self) -> float | None:
        try:
            return config_path(self.settings).stat().st_mtime
        except OSError:
            return None

    def _mcp_tools(self) -> list[Tool]:
        from .mcp_config import load_servers

        self._problems = {}
        servers = load_servers(self.settings)
        if not servers:
            return []
        from .mcp_client import server_tools

        tools: list[Tool] = []
        for server in servers:
            try:
                tools.extend(server_tools(server, self.settings))
            except Exception as exc:  # one server down must not hide the others or the built-ins
                self._problems[server.name] = str(exc) or type(exc).__name__
        return tools
