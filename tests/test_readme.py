"""The README's Quickstart gets a new user to the `cove` command and to the client packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text("utf-8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def requirement_names(requirements: list[str]) -> dict[str, str]:
    named = (re.match(r"([A-Za-z0-9_.-]+)(.*)", r) for r in requirements)
    return {m.group(1).lower(): m.group(2) for m in named if m}


def test_quickstart_says_how_to_reach_the_command() -> None:
    quickstart = section("Quickstart")
    assert ".venv/bin/cove" in quickstart
    assert "source .venv/bin/activate" in quickstart
    assert "pipx install ." in quickstart and "uv tool install ." in quickstart


def test_the_api_examples_packages_come_with_the_clients_extra() -> None:
    imported = set(re.findall(r"^(?:from|import) (\w+)", section("The HTTP API"), re.MULTILINE))
    extras = PYPROJECT["project"]["optional-dependencies"]
    clients = requirement_names(extras["clients"])
    assert imported <= set(clients), imported
    assert "'.[clients]'" in section("Quickstart")
    tests = requirement_names(extras["test"])
    assert {name: tests[name] for name in clients} == clients  # the ranges the tests run with
