"""The web chat's catalog route: ranked for this machine, each entry with its fit and speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.engine import fitting
from cove.engine.planner import DECODE_MODEL
from cove.history.measurements import Measurement, Measurements
from cove.library.local import Cove
from cove.machine import Machine
from cove.store import catalog

__all__ = ["anyio_backend"]

MACHINES = Path(__file__).parent / "machines"


def on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    described = Machine.from_dict(json.loads((MACHINES / f"{name}.json").read_text()))
    monkeypatch.setattr(fitting, "this_machine", lambda home, fresh=False: described)


@pytest.mark.anyio
async def test_the_catalog_is_ranked_for_this_machine(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, "laptop-4gb")
    async with client(make_app(fake_cove)) as c:
        models = (await c.get("/api/cove/catalog")).json()["models"]
    assert {m["name"] for m in models} == {e.name for e in catalog.CATALOG}  # nothing left out
    planned = [m for m in models if "plan" in m]
    assert planned and all(m["fit"] in ("yes", "slow", "tight", "if freed", "no") for m in planned)
    assert models[: len(planned)] == planned  # entries without figures come last
    assert planned[0]["usable"] and planned[0]["plan"]["decode_tps"] > 0
    labels = [m["fit"] for m in planned]
    assert "no" in labels and labels.index("no") > labels.index("yes")  # a 4 GB laptop cannot hold all
    # The speeds follow what this machine measured: half of what was predicted, half the speed.
    first = planned[0]["plan"]["decode_tps"]
    with Measurements.of_home(fake_cove.settings.home) as m:
        m.record(
            Measurement(
                "x", "dx", "answer", decode_tps=10.0, predicted_decode_tps=20.0, decode_model=DECODE_MODEL
            )
        )
    async with client(make_app(fake_cove)) as c:
        again = (await c.get("/api/cove/catalog")).json()["models"]
    same = next(m for m in again if m["name"] == planned[0]["name"])
    assert same["plan"]["decode_tps"] == pytest.approx(first / 2, abs=0.1)


@pytest.mark.anyio
async def test_a_machine_that_cannot_be_described_still_gets_the_catalog(
    fake_cove: Cove, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(home: Path, fresh: bool = False) -> Machine:
        raise OSError("no /proc here")

    monkeypatch.setattr(fitting, "this_machine", broken)
    async with client(make_app(fake_cove)) as c:
        models = (await c.get("/api/cove/catalog")).json()["models"]
    assert len(models) == len(catalog.CATALOG) and "fit" not in models[0]
