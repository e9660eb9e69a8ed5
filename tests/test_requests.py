"""Options and keep_alive as clients send them: Ollama's runner-only options, durations, bad values."""

from __future__ import annotations

import pytest

from cove.engine.options import checked_options, options_to_body, parse_keep_alive
from cove.errors import BadRequest, CoveError


def test_runner_only_ollama_options_are_ignored_not_refused() -> None:
    checked = checked_options({"num_gpu": 99, "num_thread": 4, "mirostat": 2, "temperature": 0.5})
    assert checked == {"temperature": 0.5}


def test_unknown_options_are_refused() -> None:
    with pytest.raises(CoveError, match="temprature"):
        checked_options({"temprature": 0.5})


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, None), (30, 30.0), ("5m", 300.0), ("30s", 30.0), ("1h", 3600.0), ("-1", -1.0)]
)
def test_keep_alive_durations(raw: object, seconds: float | None) -> None:
    assert parse_keep_alive(raw) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", float("nan"), "soon", "5 parsecs"])
def test_keep_alive_that_is_not_a_duration_is_refused(raw: object) -> None:
    with pytest.raises(BadRequest, match="keep_alive"):
        parse_keep_alive(raw)  # type: ignore[arg-type]


def test_num_predict_minus_one_means_no_limit() -> None:
    assert "max_tokens" not in options_to_body({"num_predict": -1})
    assert options_to_body({"num_predict": 7, "stop": ["x"]}) == {"max_tokens": 7, "stop": ["x"]}


def test_null_options_are_options_not_set() -> None:
    """LangChain's OllamaEmbeddings sends every option it knows, most of them null."""
    sent = {"num_ctx": None, "mirostat": None, "stop": None, "temperature": 0.5, "num_gpu": None}
    assert checked_options(sent) == {"temperature": 0.5}
