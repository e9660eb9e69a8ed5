"""The KV-cache type as a recipe parameter and a request option, and what it does to a load."""

from __future__ import annotations

import pytest

from cove.engine.memory import estimate, kv_cache_type
from cove.engine.options import checked_options, options_to_body
from cove.errors import InvalidRecipe
from cove.recipe import parse_recipe

INFO = {"block_count": 4, "head_count": 4, "head_count_kv": 2, "embedding_length": 256}


def test_a_recipe_names_its_kv_cache_type() -> None:
    recipe = parse_recipe("FROM gemma3:270m\nPARAMETER kv_cache_type Q8_0\n")
    assert recipe.parameters == {"kv_cache_type": "q8_0"}
    assert "PARAMETER kv_cache_type q8_0" in recipe.to_text()
    assert kv_cache_type(recipe.parameters, {}) == "q8_0"


def test_an_unknown_kv_cache_type_is_refused_with_the_choices() -> None:
    with pytest.raises(InvalidRecipe, match="one of f16, q8_0"):
        parse_recipe("FROM gemma3:270m\nPARAMETER kv_cache_type q4_0\n")
    with pytest.raises(InvalidRecipe, match="one of f16, q8_0"):
        checked_options({"kv_cache_type": 8})


def test_the_option_wins_over_the_recipe_and_is_a_load_setting_not_a_request_field() -> None:
    options = checked_options({"kv_cache_type": "f16"})
    assert kv_cache_type({"kv_cache_type": "q8_0"}, options) == "f16"
    assert kv_cache_type({}, {}) is None  # the scheduler chooses
    assert options_to_body(options) == {}


def test_q8_0_roughly_halves_the_kv_cache_and_its_prompt_cache() -> None:
    f16 = estimate(INFO, 10**8, 4096, 2)
    q8 = estimate(INFO, 10**8, 4096, 2, kv_type="q8_0")
    assert q8.kv_cache == f16.kv_cache * 34 // 64
    assert q8.prompt_cache < f16.prompt_cache
    assert q8.weights == f16.weights and q8.overhead == f16.overhead
