"""What the same tokens would have cost on hosted models: a default price table, or COVE_HOME/prices.json.

prices.json replaces the default table entirely:

    {"as_of": "2026-11-01", "models": {"gpt-4o": {"input": 2.5, "output": 10.0}}}

Prices are US dollars per million tokens. cove never fetches prices from the network.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadRequest
from .records import Stats

PRICES_AS_OF = "2026-11-01"
PRICES_FILE = "prices.json"


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    models: dict[str, Price]


# Standard list prices (no batch or cache discounts). Providers change these; a person who
# wants other figures or models writes COVE_HOME/prices.json rather than editing this file.
DEFAULT_PRICES = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-opus-4": Price(15.00, 75.00),
    "gemini-2.0-flash": Price(0.10, 0.40),
}


def default_prices() -> PriceTable:
    return PriceTable(PRICES_AS_OF, dict(DEFAULT_PRICES))


def load_prices(home: Path) -> PriceTable:
    """The person's prices.json if there is one, else the default table."""
    path = home / PRICES_FILE
    if not path.exists():
        return default_prices()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
    return parse_prices(data, str(path))


def parse_prices(data: Any, where: str = PRICES_FILE) -> PriceTable:
    if not isinstance(data, dict):
        raise BadRequest(f'{where} must be an object like {{"as_of": "...", "models": {{...}}}}')
    as_of = data.get("as_of", "unknown")
    if not isinstance(as_of, str):
        raise BadRequest(f"{where}: as_of must be a date as text")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise BadRequest(f'{where}: "models" must be an object of name -> {{"input": x, "output": y}}')
    return PriceTable(
        as_of, {name: _price(value, f"{where}: model {name!r}") for name, value in models.items()}
    )


def _price(value: Any, where: str) -> Price:
    if not isinstance(value, dict):
        raise BadRequest(f'{where} must be {{"input": x, "output": y}}')
    figures = []
    for key in ("input", "output"):
        figure = value.get(key)
        if (
            isinstance(figure, bool)
            or not isinstance(figure, int | float)
            or not math.isfinite(figure)
            or figure < 0
        ):
            raise BadRequest(f"{where}: {key} must be a number of dollars per million tokens, 0 or more")
        figures.append(float(figure))
    return Price(*figures)


def cost(stats: Stats, table: PriceTable) -> dict[str, float]:
    """For each hosted model in `table`, the USD the tokens in `stats` would have cost there."""
    return {
        name: (stats.tokens_in * price.input + stats.tokens_out * price.output) / 1_000_000
        for name, price in table.models.items()
    }
