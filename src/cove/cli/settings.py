"""`cove config`: every setting, its value and where it came from (secrets masked)."""

from __future__ import annotations

import click
from rich.table import Table

from ..config import explain
from .main import cli, out, print_json


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show_config(as_json: bool) -> None:
    """Show every setting, its value, and whether it came from the environment or the default."""
    rows = explain()
    if as_json:
        return print_json([row.to_dict() for row in rows])
    table = Table(box=None)
    table.add_column("VARIABLE", no_wrap=True)
    table.add_column("VALUE", overflow="fold")
    table.add_column("FROM", no_wrap=True)
    table.add_column("MEANING")
    for row in rows:
        # host and port share COVE_HOST; naming the part keeps the two rows apart.
        variable = f"{row.env} ({row.name})" if row.env == "COVE_HOST" else row.env
        table.add_row(variable, _text(row.value), row.source, row.description)
    out.print(table)


def _text(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
