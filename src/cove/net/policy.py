"""What may leave the machine: the egress policy as data, and `decide`, its one pure function.

Features are named strings: "pull" (a model the user asked for by name), "tool:NAME" (a tool
the user switched on), "mcp:SERVER" (an MCP server's HTTP URL), "engine:remote" (the cove
server the user pointed COVE_HOST at, or an upstream a remote model's recipe names: `FROM
openai+https://HOST/v1#MODEL`). Everything else is refused. Loopback is never egress.
The tools' switches and allow-lists are the tools' own file (`cove.tools.policy`,
COVE_HOME/tools.json, keyed by tool name and by "mcp:SERVER"); this module only reads them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .addresses import parse_ip

PULL = "pull"
REMOTE_ENGINE = "engine:remote"


#: The allow-list entry that lets a tool reach any host (URL tools still reach public ones only).
ANY_HOST = "*"


@dataclass(frozen=True)
class ToolRule:
    """One tool's switch and the hosts it may reach (`cove tools enable NAME --allow HOST`).

    The gate reaches only hosts on the list: a network tool with an empty list reaches nothing
    but the hosts the user named for it in a setting (`NamedHost`).
    """

    enabled: bool = False
    allow: tuple[str, ...] = ()

    def permits(self, host: str) -> bool:
        return any(host_matches(pattern, host) for pattern in self.allow)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "allow": list(self.allow)}


@dataclass(frozen=True)
class NamedHost:
    """A host the user named in a setting for one feature: the SearXNG in COVE_SEARXNG_URL."""

    feature: str
    host: str
    setting: str


@dataclass(frozen=True)
class EngineHost:
    """An upstream a remote model's recipe names (FROM openai+https://HOST:PORT/v1#MODEL)."""

    host: str
    port: int
    model: str  # the cove model whose recipe names it, for the reason shown


@dataclass(frozen=True)
class Policy:
    """Everything `decide` needs; the gate builds one from Settings and the tools' file."""

    offline: bool = False
    tools: Mapping[str, ToolRule] = field(default_factory=dict)
    #: Hosts on a tool's allow-list by themselves, because a setting names them.
    named: tuple[NamedHost, ...] = ()
    #: host:port of the `cove serve` the CLI talks to (COVE_HOST), which the user named.
    remote_host: str | None = None
    remote_port: int | None = None
    #: Upstreams of the remote model asking (engine/remote.py adds them to its gate's policy).
    engines: tuple[EngineHost, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def decide(policy: Policy, feature: str, host: str, port: int | None) -> Decision:
    """Whether `feature` may connect to host:port, and why, in words `cove privacy log` shows."""
    host = normal_host(host)
    if policy.offline and feature == PULL:  # offline means no downloads at all, even from a mirror here
        return Decision(
            False,
            "offline (COVE_OFFLINE=1 or --offline): cove pull fetches nothing; "
            "pull without --offline and with COVE_OFFLINE unset",
        )
    if is_loopback_host(host):
        return Decision(True, "loopback: never leaves this machine")
    if policy.offline:
        return Decision(
            False,
            "offline (COVE_OFFLINE=1 or --offline): nothing leaves this machine; "
            "run without --offline and with COVE_OFFLINE unset to allow it",
        )
    if feature == PULL:
        return Decision(True, "a model you asked for by name (cove pull)")
    if feature == REMOTE_ENGINE:
        if policy.remote_host and host == normal_host(policy.remote_host) and port == policy.remote_port:
            return Decision(True, "the cove server you named in COVE_HOST")
        for engine in policy.engines:
            if host == normal_host(engine.host) and port == engine.port:
                return Decision(True, f"an upstream the recipe of {engine.model} names (FROM openai+…)")
        return Decision(
            False, "not the cove server named in COVE_HOST (set COVE_HOST=HOST:PORT to reach another)"
        )
    if feature.startswith(("tool:", "mcp:")):
        return _decide_tool(policy, feature, host)
    return Decision(False, f"{feature!r} is not something cove may reach the network for")


def rule_name(feature: str) -> str:
    """The tools.json entry a feature is judged by: "tool:web_search" → "web_search"; "mcp:X" stays."""
    return feature.removeprefix("tool:")


def _decide_tool(policy: Policy, feature: str, host: str) -> Decision:
    name = rule_name(feature)
    rule = policy.tools.get(name) or ToolRule()
    named = next((n for n in policy.named if n.feature == feature and host_matches(n.host, host)), None)
    if not rule.enabled:
        how = f"cove tools enable {name}" + ("" if named else f" --allow {host}")
        return Decision(False, f"tool {name} is off; to let it reach {host}, run `{how}`")
    if named is not None:
        return Decision(True, f"tool {name} is on and {host} is the host you named in {named.setting}")
    if not rule.permits(host):
        listed = f" ({', '.join(rule.allow)})" if rule.allow else " (empty)"
        return Decision(
            False,
            f"{host} is not on {name}'s allow-list{listed}; "
            f"add it with `cove tools enable {name} --allow {host}`",
        )
    if ANY_HOST in rule.allow:
        return Decision(True, f"tool {name} is on for any host (--allow '*')")
    return Decision(True, f"{name} is on and {host} is on its allow-list")


def normal_host(host: str) -> str:
    """Lower-case, no brackets, no trailing dot: the form hosts are compared in."""
    return host.strip().strip("[]").rstrip(".").lower()


def host_matches(pattern: str, host: str) -> bool:
    """`example.com` matches itself only; `*.example.com` matches its sub-domains and itself; `*` all."""
    pattern, host = normal_host(pattern), normal_host(host)
    if pattern == ANY_HOST:
        return True
    if pattern.startswith("*."):
        base = pattern[2:]
        return host == base or host.endswith("." + base)
    return host == pattern


def is_loopback_host(host: str) -> bool:
    """A loopback (or unspecified) literal, or `localhost` / `*.localhost` (RFC 6761).

    Literals are read as libc reads them (`cove.net.addresses.parse_ip`): `2130706433`, `0x7f.1`
    and `127.1` are 127.0.0.1 to `getaddrinfo` and `connect`, so they are loopback here too.
    """
    host = normal_host(host)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return is_loopback_address(host)


def is_loopback_address(text: str) -> bool:
    """Loopback, or unspecified (0.0.0.0, ::): a connection to either stays on this machine.

    This is about egress only: URL tools refuse both anyway (cove.net.addresses).
    """
    address = parse_ip(text)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified
