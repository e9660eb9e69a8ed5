"""The MCP servers the user declared: COVE_MCP_SERVERS, or COVE_HOME/mcp.json when that is unset.

    {"servers": {
        "notes": {"command": "python", "args": ["notes_server.py"], "env": {"NOTES": "~/notes"}},
        "search": {"url": "http://127.0.0.1:8765/mcp"}
    }}

(`mcpServers` is read as well, the key other MCP clients use.) A stdio server is a command cove
starts and talks to over its standard input and output; whatever that program connects to is
outside cove's process, and so outside its gate. A streamable HTTP server is a URL, reached
through the egress gate as the feature `mcp:NAME` (loopback always; another host only when
`cove tools enable NAME --allow HOST` allows it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSetting

if TYPE_CHECKING:
    from ..config import Settings

FILE_NAME = "mcp.json"
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")
#: Between an MCP server's name and its tool's, in the name the model sees.
SEPARATOR = "__"


@dataclass(frozen=True)
class McpServer:
    """One declared server: a command (stdio) or a URL (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None

    @property
    def feature(self) -> str:
        return f"mcp:{self.name}"

    def describe(self) -> str:
        if self.url:
            return self.url
        return " ".join([self.command or "", *self.args])


def config_path(settings: Settings) -> Path:
    return settings.mcp_servers or settings.home / FILE_NAME


def load_servers(settings: Settings) -> list[McpServer]:
    """The declared servers; none when there is no file. A malformed file is an InvalidSetting."""
    path = config_path(settings)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if settings.mcp_servers is not None:
            raise InvalidSetting(
                f"COVE_MCP_SERVERS names {path}, which does not exist; create it or unset COVE_MCP_SERVERS"
            ) from None
        return []
    except (OSError, ValueError) as exc:
        raise InvalidSetting(
            f"{path} is not readable JSON ({exc}); fix it or remove it (no MCP servers)"
        ) from None
    entries = raw.get("servers", raw.get("mcpServers")) if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        shape = '{"servers": {NAME: {"command": ...} or {"url": ...}}}'
        raise InvalidSetting(f"{path} must hold {shape}")
    return [_server(path, str(name), entry) for name, entry in entries.items()]


def _server(path: Path, name: str, entry: Any) -> McpServer:
    where = f"{path}: server {name!r}"
    if not SERVER_NAME.match(name) or SEPARATOR in name:
        raise InvalidSetting(f"{where}: a name is 1-30 letters, digits, _ or - (no '__')")
    if not isinstance(entry, dict):
        raise InvalidSetting(f"{where} must be an object with a command or a url")
    url, command = entry.get("url"), entry.get("command")
    if (url is None) == (command is None):
        raise InvalidSetting(f"{where} needs exactly one of command (stdio) or url (streamable HTTP)")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidSetting(f"{where}: url must be an http:// or https:// URL")
        return McpServer(name, url=url)
    args = entry.get("args") or []
    env = entry.get("env") or {}
    if not isinstance(command, str) or not command or not all(isinstance(a, str) for a in args):
        raise InvalidSetting(f"{where}: command is a program name and args a list of strings")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise InvalidSetting(f"{where}: env maps names to strings")
    return McpServer(name, command=command, args=tuple(args), env={str(k): v for k, v in env.items()})
