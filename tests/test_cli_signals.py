"""Ctrl-C: every `cove` command it interrupts exits 130 with no traceback (unless --debug)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from cli_helpers import _workdir, run_main

from cove.cli import main as main_module
from cove.cli.main import cli

COVE = Path(sys.executable).with_name("cove")

__all__ = ["_workdir"]


def interrupted_after(delay: float, *args: str) -> subprocess.CompletedProcess[str]:
    """Start the real `cove` with a stdin that never ends, send SIGINT after `delay` seconds.
    SIGINT is set back to its default in the child, as a terminal has it: a test run started in
    the background by a shell (as CI may be) ignores SIGINT, and a child would inherit that and
    never see the signal (it then ran to the end once standard input closed)."""
    process = subprocess.Popen(
        [str(COVE), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COVE_LOCAL": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# Early delays land while Python is still importing cove (a few hundred ms), the last one
# while the command waits for its standard input.
@pytest.mark.parametrize("delay", [0.06, 0.12, 0.2, 0.3, 0.45, 2.0])
def test_ctrl_c_at_any_moment_exits_130_without_traceback(delay: float) -> None:
    done = interrupted_after(delay, "persona", "add", "someone")
    failed = done.returncode != 130 or "Traceback" in done.stderr
    if failed and not _reached_cove(done.stderr):
        # Python's own start (`site`, which on a loaded machine can take this long) and the pip
        # launcher's `import re` come before any code of cove's: it dies by the signal, or
        # prints the interrupted import and exits 1.
        pytest.skip("the signal arrived before cove's entry point ran")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() in ("", "aborted")


def _reached_cove(stderr: str) -> bool:
    """Whether cove's own code was running: every frame of it sits under cove_entry's main().
    (The launcher's `from cove_entry import main`, and cove_entry's module-level imports, come
    before any code that could catch the signal.)"""
    return bool(re.search(r'cove_entry\.py", line \d+, in main', stderr))


def test_ctrl_c_with_debug_shows_the_traceback() -> None:
    # On a loaded machine Python's own start can outlast a fixed delay: wait longer each time
    # until the signal lands inside cove (its traceback then passes through cove_entry's main).
    # A name of its own each time, so that a try the signal missed cannot make the next one fail.
    for attempt, delay in enumerate((2.0, 5.0, 12.0)):
        done = interrupted_after(delay, "--debug", "persona", "add", f"someone-{attempt}")
        if _reached_cove(done.stderr):
            break
    assert done.returncode == 130, done.stderr
    assert "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr


def test_keyboard_interrupt_outside_a_command_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    code, out, err = run_main(monkeypatch, capsys, "list")
    assert (code, out, err) == (130, "", "aborted\n")


def test_a_command_exit_code_reaches_the_shell(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @click.command()
    def stopped() -> None:
        click.echo("half an answer")
        raise click.exceptions.Exit(130)  # what a one-shot answer stopped with Ctrl-C raises

    monkeypatch.setitem(cli.commands, "stopped", stopped)
    code, out, _ = run_main(monkeypatch, capsys, "stopped")
    assert (code, out) == (130, "half an answer\n")
    assert main_module.main is not None


def test_a_ctrl_c_python_wraps_while_a_class_is_made_still_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    import cove_entry

    real_import = builtins.__import__

    def interrupted(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "cove.cli.main":  # Python 3.11 turns a Ctrl-C in __set_name__ into this
            raise RuntimeError("Error calling __set_name__") from KeyboardInterrupt()
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    monkeypatch.setattr(sys, "argv", ["cove", "list"])
    with pytest.raises(SystemExit) as exited:
        cove_entry.main()
    assert exited.value.code == 130 and capsys.readouterr().err == "\naborted\n"
