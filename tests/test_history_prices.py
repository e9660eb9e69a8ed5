"""Tests for what the same tokens would have cost on hosted models, and for a person's prices.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cove.errors import BadRequest
from cove.history import PRICES_AS_OF, History, Price, PriceTable, cost, db_path, default_prices, load_prices


def test_default_table_is_dated_and_sane() -> None:
    table = default_prices()
    assert table.as_of == PRICES_AS_OF
    assert {"gpt-4o", "gpt-4o-mini"} <= set(table.models)
    assert all(0 < p.input <= p.output for p in table.models.values())


def test_cost_of_recorded_usage(cove_home: Path) -> None:
    with History(db_path(cove_home)) as history:
        chat = history.start("local-model")
        history.add_message(chat.id, "user", "question")
        history.add_message(
            chat.id, "assistant", "answer", prompt_tokens=2_000_000, completion_tokens=500_000
        )
        stats = history.stats()
    table = PriceTable("2026-01-01", {"cheap": Price(0.10, 0.40), "dear": Price(3.0, 15.0)})
    assert cost(stats, table) == pytest.approx({"cheap": 0.2 + 0.2, "dear": 6.0 + 7.5})


def test_prices_json_replaces_the_defaults(cove_home: Path) -> None:
    cove_home.mkdir(parents=True)
    document = {"as_of": "2027-02-03", "models": {"my-cloud": {"input": 1, "output": 2.5}}}
    (cove_home / "prices.json").write_text(json.dumps(document), encoding="utf-8")
    assert load_prices(cove_home) == PriceTable("2027-02-03", {"my-cloud": Price(1.0, 2.5)})


def test_no_prices_json_means_defaults(cove_home: Path) -> None:
    assert load_prices(cove_home) == default_prices()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[]", "must be an object"),
        ('{"as_of": 20260101, "models": {"a": {"input": 1, "output": 1}}}', "as_of"),
        ('{"as_of": "x"}', '"models"'),
        ('{"models": {"a": 3}}', "model 'a'"),
        ('{"models": {"a": {"input": -1, "output": 1}}}', "input must be a number"),
        ('{"models": {"a": {"input": 1, "output": "2"}}}', "output must be a number"),
        ('{"models": {"a": {"input": true, "output": 1}}}', "input must be a number"),
    ],
)
def test_malformed_prices_json_names_the_problem(cove_home: Path, text: str, problem: str) -> None:
    cove_home.mkdir(parents=True)
    (cove_home / "prices.json").write_text(text, encoding="utf-8")
    with pytest.raises(BadRequest, match=r"prices\.json") as caught:
        load_prices(cove_home)
    assert problem in str(caught.value)
