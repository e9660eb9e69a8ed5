"""The measurements table: loads and answers recorded, summed up per model, and the decode
factor this machine's answers give models it has not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cove.history.measurements import Measurement, Measurements


def answer(
    digest: str,
    decode: float,
    predicted: float,
    num_ctx: int = 4096,
    peak: int = 100,
    formula: int = 2,
    threads: int | None = None,
) -> Measurement:
    return Measurement(
        "m",
        digest,
        "answer",
        num_ctx=num_ctx,
        threads=threads,
        peak_bytes=peak,
        decode_tps=decode,
        predicted_decode_tps=predicted,
        decode_model=formula,
    )


def test_a_model_is_summed_up_as_medians_memory_at_its_context(tmp_path: Path) -> None:
    with Measurements.of_home(tmp_path) as m:
        assert m.of("d1") is None and m.decode_efficiency(2) is None
        m.record(answer("d1", 10.0, 20.0, peak=100))
        m.record(answer("d1", 30.0, 20.0, peak=300))
        m.record(answer("d1", 20.0, 20.0, num_ctx=8192, peak=900))
        m.record(Measurement("m", "d1", "load", num_ctx=4096, peak_bytes=200))
        summary = m.of("d1", 4096)
        assert summary is not None
        # Three answers were run; the load only adds its memory.
        assert (summary.runs, summary.peak_bytes, summary.decode_tps) == (3, 200, 20.0)
        assert m.of("d1", 8192).peak_bytes == 900  # type: ignore[union-attr]
    # Kept in cove's database: another process (here a new connection) sees them.
    with Measurements.of_home(tmp_path) as again:
        assert again.of("d1") is not None


def test_the_decode_factor_leaves_out_the_model_being_checked(tmp_path: Path) -> None:
    with Measurements.of_home(tmp_path) as m:
        m.record(answer("d1", 10.0, 20.0))
        m.record(answer("d2", 30.0, 20.0))
        m.record(answer("d3", 0.0, 20.0))  # a failed answer measures nothing
        assert m.decode_efficiency(2) == 1.0  # median of 0.5 and 1.5
        assert m.decode_efficiency(2, besides="d2") == 0.5


def test_the_decode_factor_counts_only_the_current_formulas_predictions(tmp_path: Path) -> None:
    with Measurements.of_home(tmp_path) as m:
        m.record(answer("d1", 10.0, 40.0, formula=1))  # an older cove's prediction
        m.record(Measurement("m", "d1", "answer", decode_tps=10.0, predicted_decode_tps=40.0))  # none
        assert m.decode_efficiency(2) is None
        m.record(answer("d2", 30.0, 20.0))
        assert m.decode_efficiency(2) == 1.5
        assert m.decode_efficiency(1) == 0.25


def test_the_decode_factor_is_taken_on_the_same_threads_where_it_can_be(tmp_path: Path) -> None:
    with Measurements.of_home(tmp_path) as m:
        m.record(answer("d1", 20.0, 20.0, threads=2))
        m.record(answer("d2", 14.0, 20.0, threads=1))
        m.record(answer("d3", 21.0, 20.0, threads=2))
        assert m.decode_efficiency(2, threads=1) == 0.7  # one thread: its own regime
        assert m.decode_efficiency(2, threads=2) == 1.025
        assert m.decode_efficiency(2, threads=2, besides="d3") == 1.0
        # No answer on that many threads yet: every answer's, rather than none.
        assert m.decode_efficiency(2, threads=4) == 1.0
        assert m.decode_efficiency(2, threads=1, besides="d2") == 1.025


def test_a_look_never_creates_the_database(tmp_path: Path) -> None:
    assert Measurements.if_any(tmp_path) is None
    assert not (tmp_path / "cove.db").exists()
    with pytest.raises(ValueError, match="one of"):
        Measurements.of_home(tmp_path).record(Measurement("m", "d", "guess"))


def test_a_load_in_its_own_process_records_that_process_peak(tmp_path: Path) -> None:
    import os
    from types import SimpleNamespace

    from cove.engine.base import LoadSpec
    from cove.engine.calibration import load_recorder

    record = load_recorder(tmp_path)
    spec = LoadSpec(name="m:latest", model_path=tmp_path / "m", digest="d9", num_ctx=2048)
    record(spec, SimpleNamespace(pid=os.getpid()), 5000)
    record(spec, SimpleNamespace(), 5000)  # in-process: no figure of its own, nothing recorded
    with Measurements.of_home(tmp_path) as m:
        summary = m.of("d9", 2048)
        assert summary is not None and summary.runs == 1
        assert summary.peak_bytes is not None and summary.peak_bytes > 10_000_000  # this Python


def test_each_timed_answer_is_recorded_for_its_model(tmp_path: Path) -> None:
    from cove.engine.base import LoadSpec
    from cove.engine.calibration import answer_recorder
    from cove.engine.events import Usage

    record = answer_recorder(tmp_path)
    spec = LoadSpec(name="m:latest", model_path=tmp_path / "m", digest="d7", num_ctx=4096)
    record(spec, Usage(prompt_tokens=40, completion_tokens=64, prompt_ms=200.0, tokens_per_s=31.25))
    record(spec, Usage(prompt_tokens=40, completion_tokens=2, tokens_per_s=900.0))  # too short to time
    with Measurements.of_home(tmp_path) as m:
        summary = m.of("d7")
        assert summary is not None and summary.runs == 1
        assert (summary.decode_tps, summary.prompt_tps) == (31.2, 200.0)
