"""Which tools the user switched on, and the hosts each may reach: kept in COVE_HOME/tools.json.

Every tool is off until `cove tools enable NAME [--allow HOST ...]`. A tool that reaches the
network runs only for the hosts on its allow-list (the egress gate reads this file on each
connection): `example.org`, `*.example.org` (and its sub-domains), or `*` (any host; URL tools
still reach public addresses only). An HTTP MCP server's connections are the entry `mcp:SERVER`.
The file is small JSON, written atomically:

    {"tools": {"current_time": {"enabled": true, "allow": []},
               "fetch_url": {"enabled": true, "allow": ["example.org"]},
               "mcp:notes": {"enabled": true, "allow": ["notes.lan"]}}}
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidSetting
from ..store.atomic import atomic_write_bytes

FILE_NAME = "tools.json"
_lock = threading.Lock()


@dataclass(frozen=True)
class ToolState:
    """One tool's switch and allow-list."""

    enabled: bool = False
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolPolicy:
    """Every tool's state; a tool not named is off with no hosts."""

    tools: dict[str, ToolState] = field(default_factory=dict)

    def state(self, name: str) -> ToolState:
        return self.tools.get(name, ToolState())

    def enabled(self, name: str) -> bool:
        return self.state(name).enabled

    def enabled_names(self) -> list[str]:
        return sorted(n for n, s in self.tools.items() if s.enabled)


def policy_path(home: Path) -> Path:
    return home / FILE_NAME


def load(home: Path) -> ToolPolicy:
    """The policy as stored; no file means every tool is off."""
    path = policy_path(home)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ToolPolicy()
    except (OSError, ValueError) as exc:
        raise InvalidSetting(
            f"{path} is not readable JSON ({exc}); fix it or remove it (every tool is off)"
        ) from None
    entries = raw.get("tools") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise InvalidSetting(f'{path} must hold {{"tools": {{NAME: {{"enabled": ..., "allow": [...]}}}}}}')
    tools = {}
    for name, entry in entries.items():
        if isinstance(entry, dict):
            hosts = entry.get("allow") or []
            tools[str(name)] = ToolState(
                enabled=entry.get("enabled") is True,
                allow=tuple(str(h) for h in hosts if isinstance(h, str)),
            )
    return ToolPolicy(tools)


def save(home: Path, policy: ToolPolicy) -> None:
    data: dict[str, Any] = {
        "tools": {
            name: {"enabled": state.enabled, "allow": list(state.allow)}
            for name, state in sorted(policy.tools.items())
        }
    }
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(policy_path(home), (json.dumps(data, indent=2) + "\n").encode())


def enable(home: Path, name: str, allow: tuple[str, ...] = ()) -> ToolState:
    """Switch a tool on; hosts given are added to its allow-list (a host is a name, lower case)."""
    given = [allow_entry(host) for host in allow]
    with _lock:
        policy = load(home)
        old = policy.state(name)
        state = ToolState(True, tuple(dict.fromkeys([*old.allow, *given])))
        save(home, ToolPolicy({**policy.tools, name: state}))
        return state


def disable(home: Path, name: str) -> ToolState:
    """Switch a tool off; its allow-list is kept for when it is switched on again."""
    with _lock:
        policy = load(home)
        state = ToolState(False, policy.state(name).allow)
        save(home, ToolPolicy({**policy.tools, name: state}))
        return state


def allow_entry(text: str) -> str:
    """One `--allow` value as stored (lower case, no trailing dot); InvalidSetting says what to give."""
    host = text.strip().lower().rstrip(".")
    if not host:
        raise InvalidSetting("--allow was given an empty host; give a host name such as example.org")
    if "/" in host:
        raise InvalidSetting(f"--allow takes a host name such as example.org, not a URL ({text!r})")
    if "*" in host and host != "*" and (not host.startswith("*.") or "*" in host[2:]):
        raise InvalidSetting(
            f"--allow {text!r}: a wildcard is '*' alone (any host) or '*.example.org' (a domain)"
        )
    return host
