"""What the CLI tests share: a private working folder, the chat history, typed input, `main()`."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cove.cli.main import main
from cove.history import History, db_path
from cove.library.local import Cove


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Recipes resolve FROM against the working folder; keep that one empty and private."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def history(fake_cove: Cove) -> Iterator[History]:
    """The history the terminal chat writes every turn to."""
    with History(db_path(fake_cove.settings.home)) as store:
        yield store


def feed(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> None:
    """Answer `input()` with these lines, then Ctrl-D."""
    pending = iter(lines)

    def fake_input(prompt: str = "") -> str:
        try:
            return next(pending)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """The real entry point in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["cove", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
