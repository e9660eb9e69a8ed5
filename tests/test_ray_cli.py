"""`cove ray serve`'s refusals that need no cluster: each one line, before Ray starts."""

from __future__ import annotations

import pytest
from cli_helpers import _workdir, run_main

from cove.library.local import Cove

__all__ = ["_workdir"]

pytest.importorskip("ray.serve")


def refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run_main(monkeypatch, capsys, "ray", "serve", *args)
    assert code == 1 and not out, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_detach_without_an_address_is_refused(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--detach needs --address" in refused(monkeypatch, capsys, "tiny", "--detach")


def test_a_remote_model_is_not_deployed_again(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cove.create("far", "FROM openai+http://127.0.0.1:1/v1#m\n")
    assert "far is a remote model already" in refused(monkeypatch, capsys, "far")
