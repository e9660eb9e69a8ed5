"""`cove ps`: a hint when nothing is loaded, and answers running out of parallel slots."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cli_helpers import _workdir
from click.testing import CliRunner, Result
from fakes import FakeEngine
from server_fixtures import LiveServer, make_app

import cove.cli  # noqa: F401 - registers every command on the group
from cove.cli import main as main_module
from cove.cli.main import Context, cli
from cove.engine.events import LoadedInfo
from cove.library.local import Cove

__all__ = ["_workdir"]


def ps(*args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "ps"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


class Loaded:
    """A backend that has these models loaded, as a running server reports them."""

    def __init__(self, *rows: LoadedInfo) -> None:
        self.rows = list(rows)

    def loaded(self) -> list[LoadedInfo]:
        return self.rows

    def close(self) -> None:
        pass


def through_server(monkeypatch: pytest.MonkeyPatch, backend: Loaded) -> None:
    def found(self: Context) -> Loaded:
        self.through_server = True
        return backend

    monkeypatch.setattr(Context, "backend", property(found))


def info(
    name: str, *, active: int, slots: int, expires: float | None, runs_on: tuple[str, ...] = ()
) -> LoadedInfo:
    return LoadedInfo(name, "ab" * 32, 98_000_000, 4096, slots, active, expires, runs_on)


def test_without_a_server_says_why_nothing_is_loaded(cove_home: Path) -> None:
    text = ps("--local").stdout
    assert text == "no models loaded (a model stays loaded between commands only while `cove serve` runs)\n"


def test_a_server_with_nothing_loaded_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    through_server(monkeypatch, Loaded())
    assert ps().stdout == "no models loaded (models unload when idle for COVE_KEEP_ALIVE)\n"


def test_active_out_of_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    through_server(
        monkeypatch,
        Loaded(
            info("smollm2:135m", active=1, slots=4, expires=None),
            info("gemma3:270m", active=0, slots=2, expires=299.6),
            info("old:latest", active=0, slots=0, expires=None),  # a server that does not say
            info("far:latest", active=0, slots=1, expires=60, runs_on=("gpu-box:8000", "[::1]:8001")),
        ),
    )
    lines = [line.split() for line in ps().stdout.splitlines()]
    assert lines[0] == ["NAME", "ID", "SIZE", "CONTEXT", "ACTIVE/SLOTS", "UNTIL", "WHERE"]
    assert lines[1] == ["smollm2:135m", "abababababab", "98.0", "MB", "4096", "1/4", "busy", "here"]
    assert lines[2] == ["gemma3:270m", "abababababab", "98.0", "MB", "4096", "0/2", "300", "s", "here"]
    assert lines[3] == ["old:latest", "abababababab", "98.0", "MB", "4096", "0/?", "forever", "here"]
    # A remote model holds no memory here; it says where it answers.
    assert lines[4] == [
        "far:latest",
        "abababababab",
        "-",
        "4096",
        "0/1",
        "60",
        "s",
        "gpu-box:8000,",
        "[::1]:8001",
    ]


def test_through_a_real_server(fake_cove: Cove, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cove.preload("tiny")
    with LiveServer(make_app(fake_cove)) as url:
        raw = httpx.get(f"{url}/api/ps").json()["models"]
        if "num_parallel" not in raw[0]:
            pytest.skip("this server's /api/ps does not report num_parallel and active yet")
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        monkeypatch.setattr(main_module, "Cove", None)  # the CLI must not use its own store
        row = ps().stdout.splitlines()[1].split()
    assert row[0] == "tiny:latest"
    assert row[5] == f"0/{fake_cove.settings.num_parallel}"
