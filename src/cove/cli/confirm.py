"""Asking before a command destroys something: a question on a terminal, `--yes` for scripts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import CoveError

F = TypeVar("F", bound=Callable[..., Any])


def yes_option(f: F) -> F:
    """The `-y/--yes/--force` flag every command that asks takes."""
    option = click.option(
        "-y", "--yes", "--force", "yes", is_flag=True, help="Go ahead without asking (for scripts)."
    )
    return option(f)


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # a closed standard input
        return False


def confirm(question: str, refusal: str, yes: bool) -> None:
    """Return when the command may go ahead; otherwise stop it with one line on stderr.

    With no terminal to ask on (a script, a pipe) the answer is no unless --yes was given: a
    script that did not expect the question must not lose data, nor hang waiting for a reply.
    """
    if yes:
        return
    if not stdin_is_terminal():
        raise CoveError(f"{refusal}: pass --yes to go ahead (there is no terminal to ask on)")
    if not click.confirm(question, default=False, err=True):
        click.echo("nothing changed", err=True)
        raise click.exceptions.Exit(1)
