"""`cove doctor`: one screen about this machine as cove sees it (`--json` for scripts)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..engine import fitting
from ..machine import GB, Machine, this_machine
from .fit import print_json

out = Console(highlight=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json: bool) -> None:
    """What this machine has for running models, and what cove would start with here."""
    settings = Settings.from_env()
    machine = this_machine(settings.home, fresh=True)  # about a second, for the bandwidth
    chosen, why = fitting.pick(machine)
    if as_json:
        return print_json(
            {**machine.to_dict(), "engine_version": _engine_version(), "pick": _pick(chosen, why)}
        )
    out.print(_table(machine))
    if chosen is not None:
        out.print(
            f"\n[bold]cove run[/bold] with no model would start with [bold]{chosen.entry.name}[/bold]: {why}"
        )
    else:
        out.print(f"\n{why}")


def _pick(chosen: fitting.Ranked | None, why: str) -> dict[str, Any]:
    return {"model": chosen.entry.name if chosen else None, "why": why}


def _engine_version() -> str | None:
    try:
        return metadata.version("xllamacpp")
    except metadata.PackageNotFoundError:
        return None


def _table(m: Machine) -> Table:
    table = Table(box=None, show_header=False, title="cove doctor", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    clock = f" at {m.cpu_mhz / 1000:.2f} GHz" if m.cpu_mhz else ""
    table.add_row(
        "CPU", f"{m.cpu_model}: {m.physical_cores} physical cores, {m.logical_cores} logical{clock}"
    )
    if m.load_average is not None:
        busy = "quiet" if m.load_average < 0.5 * m.logical_cores else "busy: answers come slower"
        table.add_row("load", f"{m.load_average:.1f} runnable threads on {m.logical_cores} cores ({busy})")
    if m.idle_cores is not None:
        share = "" if m.cpu_share is None else f"; an engine thread gets about {m.cpu_share:.0%} of a core"
        table.add_row("free CPU", f"{m.idle_cores:.1f} cores idle just now{share} (speeds are predicted so)")
    table.add_row("instruction sets", " ".join(f.upper() for f in m.cpu_flags) or "none that llama.cpp uses")
    table.add_row(
        "memory",
        f"{m.ram_total / GB:.1f} GB in all, {m.ram_available / GB:.1f} GB free; "
        f"the system and other programs hold {m.ram_used_by_others / GB:.1f} GB",
    )
    if m.programs:
        table.add_row(
            "most RAM", ", ".join(f"{escape(name)} {held / GB:.1f} GB" for name, held in m.programs)
        )
    table.add_row("bandwidth", _bandwidth(m))
    table.add_row("GPUs", _gpus(m))
    disk = "unknown" if m.disk_free is None else f"{m.disk_free / GB:.1f} GB free"
    table.add_row("disk", f"{disk} in {m.home}")
    table.add_row("engine", _engine(m))
    return table


def _bandwidth(m: Machine) -> str:
    if not m.bandwidth_gbs:
        return "not measured"
    # Decode reads every weight once a token: a 4 GB model can go no faster than this / 4.
    now = m.bandwidth_now_gbs
    measured = f"{now:.1f} GB/s now, " if now and now != m.bandwidth_gbs else ""
    return (
        f"{measured}{m.bandwidth_gbs:.1f} GB/s at best this week (one thread copying RAM); a CPU "
        f"writes at most about {m.bandwidth_gbs / 4:.1f} tokens/s with a 4 GB model, since each token "
        "reads every weight"
    )


def _gpus(m: Machine) -> str:
    if not m.gpus:
        return "none that llama.cpp can use (the CPU does the work)"
    shared = " (shares the RAM)" if m.unified_memory else ""
    return "; ".join(
        f"{g.description or g.name}: {g.free / GB:.1f} of {g.total / GB:.1f} GB free{shared}" for g in m.gpus
    )


def _engine(m: Machine) -> str:
    info = m.engine
    if not info.get("available"):
        return "xllamacpp is not installed"
    build = info.get("build") or {}
    version = _engine_version() or "?"
    features = " ".join(info.get("features") or []) or "?"
    compiler = f", {build['compiler']}" if build.get("compiler") else ""
    backends = ", ".join(info.get("backends") or ["cpu"])
    return f"xllamacpp {version}{compiler}; backends: {backends}; built with {features}"
