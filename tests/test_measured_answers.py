"""The library keeps each timed answer's speeds (what `cove fit` predicts from), and a database
that cannot take them costs the measurement, never the answer."""

from __future__ import annotations

import pytest

from cove.history.measurements import Measurements
from cove.library.local import Cove

LONG = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]


def test_an_answer_s_speed_is_recorded_for_its_model(fake_cove: Cove) -> None:
    answer = fake_cove.chat("tiny", LONG)
    assert answer.usage.completion_tokens >= 8
    digest = fake_cove.model("tiny").digest
    with Measurements.of_home(fake_cove.settings.home) as measurements:
        measured = measurements.of(digest)
    assert measured is not None and measured.decode_tps == pytest.approx(answer.usage.tokens_per_s, abs=0.1)


def test_a_failed_measurement_loses_no_answer(fake_cove: Cove, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(fake_cove, "_record_answer", broken)
    assert fake_cove.chat("tiny", LONG).content.startswith("You said")
