"""`cove privacy`: what may leave this machine, to where and why; `cove privacy log`: what did.

With `cove serve` running, both ask it (GET /api/cove/privacy): the server's policy (its
--offline) is the one that governs requests made through it.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..errors import CoveError
from ..net import audit, gate
from .format import human_size

out = Console(highlight=False, markup=False, emoji=False)  # hosts, commands and reasons as they are


def start_egress(offline: bool = False) -> None:
    """Install the backstop and this process's gate (with --offline, one that refuses all)."""
    audit.install("enforce")
    try:
        settings = Settings.from_env()
    except CoveError:
        return  # the command reports the bad setting itself, in its own words
    gate.install(settings.replace(offline=True) if offline else settings)


def _report(days: float | None, limit: int | None) -> dict[str, Any]:
    """From the running server when there is one (with --local, or none: this process's gate)."""
    ctx = click.get_current_context()
    local = bool(getattr(ctx.find_root().obj, "local", False))
    settings = Settings.from_env()
    if not (local or settings.local):
        from ..library.remote import find_server

        remote = find_server(settings)
        if remote is not None:
            try:
                params: dict[str, Any] = {} if days is None else {"days": days}
                if limit:
                    params["limit"] = limit
                response = remote.http.get("/api/cove/privacy", params=params)
                if response.status_code == 200:
                    report: dict[str, Any] = response.json()
                    report["source"] = f"cove serve at {settings.host}:{settings.port}"
                    return report
            finally:
                remote.close()
    from ..net.report import privacy_report  # only for this command: not on every cove start

    report = privacy_report(gate.current(), days, limit)
    report["source"] = "this process"
    return report


@click.group("privacy", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def privacy(ctx: click.Context, as_json: bool) -> None:
    """What may leave this machine, to where, and why (and `cove privacy log`: what did)."""
    if ctx.invoked_subcommand is not None:
        return
    report = _report(None, 1000)
    if as_json:
        click.echo(json.dumps(report["policy"], indent=2))
        return
    policy = report["policy"]
    out.print(policy["summary"])
    table = Table("FEATURE", "MAY LEAVE", "TO", "WHY", box=None)
    for rule in policy["rules"]:
        allowed = rule["allowed"]
        table.add_row(
            rule["feature"],
            "outside cove" if allowed is None else "yes" if allowed else "no",
            rule["to"],
            rule["why"],
        )
    out.print(table)
    for note in policy["notes"]:
        out.print(f"- {note}")
    out.print(report["ledger"]["verdict"] + " (`cove privacy log` lists every attempt)")


@privacy.command("log")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), help="Only the last N days.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="At most this many rows."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def log(days: float | None, limit: int, as_json: bool) -> None:
    """Every outbound attempt the ledger holds, newest first: allowed or refused, and why."""
    ledger = _report(days, limit)["ledger"]
    if as_json:
        click.echo(json.dumps(ledger, indent=2))
        return
    out.print(ledger["verdict"])
    if not ledger["entries"]:
        return
    table = Table("TIME", "FEATURE", "HOST", "PORT", "DECISION", "SENT", "RECEIVED", "REASON", box=None)
    for e in ledger["entries"]:
        table.add_row(
            e["at"][:19].replace("T", " "),
            e["feature"],
            e["host"],
            "" if e["port"] is None else str(e["port"]),
            e["decision"],
            human_size(e["bytes_sent"]),
            human_size(e["bytes_received"]),
            e["reason"],
        )
    out.print(table)
