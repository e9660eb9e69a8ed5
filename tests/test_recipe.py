"""Recipes: parsing every instruction, round trips, line-numbered errors, parameters, merging."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cove.errors import InvalidRecipe, ModelNotFound
from cove.recipe import PARAMETER_TYPES, Recipe, check_parameter, parse_recipe
from cove.templates import GEMMA_TEMPLATE

FULL = '''\
# A recipe using every instruction.
from gemma3:270m
ADAPTER ./lora.gguf
TEMPLATE """{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}
{% endfor %}"""
SYSTEM """
You are Mario.
Answer as Mario.
"""
PARAMETER temperature 0.7
PARAMETER top_k 40
PARAMETER num_ctx 8192
PARAMETER stop "<end_of_turn>"
PARAMETER stop User:
Parameter SEED -1
MESSAGE user Who are you?
MESSAGE assistant "It's-a me, \\"Mario\\"!"
license Apache-2.0
'''


def full_recipe() -> Recipe:
    return Recipe(
        base="gemma3:270m",
        system="You are Mario.\nAnswer as Mario.",
        template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}",
        parameters={
            "temperature": 0.7,
            "top_k": 40,
            "num_ctx": 8192,
            "stop": ["<end_of_turn>", "User:"],
            "seed": -1,
        },
        adapter="./lora.gguf",
        messages=[
            {"role": "user", "content": "Who are you?"},
            {"role": "assistant", "content": 'It\'s-a me, "Mario"!'},
        ],
        license="Apache-2.0",
    )


def test_parse_every_instruction() -> None:
    recipe = parse_recipe(FULL)
    assert recipe == full_recipe()
    assert isinstance(recipe.parameters["temperature"], float)
    assert isinstance(recipe.parameters["top_k"], int)


def test_store_and_path_bases() -> None:
    assert parse_recipe("FROM hf.co/owner/repo:Q4_K_M").base == "hf.co/owner/repo:Q4_K_M"
    assert parse_recipe("FROM /models/my model.gguf\n").base == "/models/my model.gguf"
    assert parse_recipe('FROM "C:\\\\models\\\\m.gguf"').base == "C:\\models\\m.gguf"


def test_builtin_template_name() -> None:
    assert parse_recipe("FROM m\nTEMPLATE chatml").template == "chatml"
    assert parse_recipe("FROM m\nTEMPLATE mistral-v7").template == "mistral-v7"


def test_crlf_and_bom() -> None:
    recipe = parse_recipe('\ufeffFROM m\r\nSYSTEM """\r\nhello\r\n"""\r\n')
    assert recipe == Recipe(base="m", system="hello")


def test_several_licenses_are_kept() -> None:
    recipe = parse_recipe('FROM m\nLICENSE """MIT\ntext"""\nLICENSE Apache-2.0')
    assert recipe.license == "MIT\ntext\n\nApache-2.0"


@pytest.mark.parametrize(
    "recipe",
    [
        full_recipe(),
        Recipe(base="m"),
        Recipe(base="gemma3:270m", template=GEMMA_TEMPLATE, parameters={"stop": ["<end_of_turn>"]}),
        Recipe(base="m", system="", license="  padded  ", messages=[{"role": "user", "content": ""}]),
        Recipe(base="m", system="\n leading newline and trailing spaces \n\n  "),
        Recipe(base="m", system='has """ triple\nand\ttab\r\nand \\ backslash'),
        Recipe(base="m", system='"starts with a quote"', parameters={"stop": [" ", '"""', "\n"]}),
        Recipe(base="m", system="# not a comment\n# nor this", parameters={"temperature": 1e-05}),
    ],
)
def test_round_trips(recipe: Recipe) -> None:
    assert parse_recipe(recipe.to_text()) == recipe
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_to_text_is_readable() -> None:
    text = full_recipe().to_text()
    assert text.startswith("FROM gemma3:270m\nADAPTER ./lora.gguf\n")
    assert 'SYSTEM """\nYou are Mario.\nAnswer as Mario.\n"""\n' in text
    assert "PARAMETER stop <end_of_turn>\nPARAMETER stop User:\n" in text


def error_of(text: str) -> str:
    with pytest.raises(InvalidRecipe) as info:
        parse_recipe(text, source="Recipefile")
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM m\nSYSTEMS hi", "Recipefile line 2: unknown instruction 'SYSTEMS'"),
        ("FROM m\n\nSYSTEM", "Recipefile line 3: SYSTEM needs a value"),
        ("FROM m\nPARAMETER", "Recipefile line 2: PARAMETER needs a name and a value"),
        ("FROM m\nPARAMETER top_k", "Recipefile line 2: PARAMETER top_k needs a value"),
        ("FROM m\nPARAMETER top_k many", "Recipefile line 2: top_k must be a whole number"),
        ("FROM m\nPARAMETER top_k 4.5", "Recipefile line 2: top_k must be a whole number"),
        ("FROM m\nPARAMETER temperature warm", "Recipefile line 2: temperature must be a number"),
        ("FROM m\nPARAMETER temperature nan", "Recipefile line 2: temperature must be a finite"),
        (
            "FROM m\nPARAMETER temperature 7",
            "Recipefile line 2: temperature must be between 0 and 5",
        ),
        ("FROM m\nPARAMETER num_ctx 8", "Recipefile line 2: num_ctx must be between 16 and"),
        (
            "FROM m\nPARAMETER mirostat 1",
            "Recipefile line 2: unknown parameter 'mirostat' (known: ",
        ),
        (
            'FROM m\n# c\nSYSTEM """\nabc\n',
            'Recipefile line 3: unterminated """ (opened on line 3)',
        ),
        ('FROM m\nSYSTEM """a\nb""" extra', 'Recipefile line 3: unexpected text after closing """'),
        ('FROM m\nSYSTEM "abc', 'Recipefile line 2: unterminated " string'),
        ('FROM m\nSYSTEM "a" b', "Recipefile line 2: unexpected text after closing quote"),
        ("# only a comment\nSYSTEM hi\n", "Recipefile line 2: no FROM instruction"),
        ("", "Recipefile line 1: no FROM instruction"),
        ("FROM a\nFROM b", "Recipefile line 2: duplicate FROM (first on line 1)"),
        ("FROM a\nADAPTER x\nADAPTER y", "Recipefile line 3: duplicate ADAPTER (first on line 2)"),
        ("FROM a\nPARAMETER seed 1\nPARAMETER seed 2", "line 3: duplicate PARAMETER seed"),
        ('FROM ""', "Recipefile line 1: FROM needs a model name"),
        ("FROM m\nMESSAGE bot hi", "Recipefile line 2: MESSAGE role must be one of system"),
        ("FROM m\nMESSAGE user", "Recipefile line 2: MESSAGE user needs a value"),
        ("FROM m\nTEMPLATE Chat ML", "Recipefile line 2: TEMPLATE 'Chat ML' is neither"),
        (
            "FROM m\nTEMPLATE {{ .Prompt }}",
            "Recipefile line 2: TEMPLATE: chat template has a syntax",
        ),
        (
            "FROM m\n\nTEMPLATE {{ ''.__class__ }}",
            "Recipefile line 3: TEMPLATE: chat template reaches for Python internals",
        ),
    ],
)
def test_errors_name_line_and_reason(text: str, expected: str) -> None:
    assert expected in error_of(text)
    assert error_of(text).startswith("Recipefile line ")


def test_recipe_size_is_capped() -> None:
    message = error_of("FROM m\nSYSTEM " + "x" * 1_000_001)
    assert message.startswith("Recipefile line 1: recipe is larger than 1 MB")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("temperature", "0", 0.0),
        ("temperature", 5, 5.0),
        ("TOP_P", "1", 1.0),
        ("top_k", "1000000", 1_000_000),
        ("repeat_last_n", -1, -1),
        ("presence_penalty", "-2", -2.0),
        ("num_ctx", 4096.0, 4096),
        ("num_predict", "-2", -2),
        ("seed", str(2**63 - 1), 2**63 - 1),
        ("seed", -(2**63), -(2**63)),
        ("stop", "<|im_end|>", ["<|im_end|>"]),
        ("stop", ("a", "b"), ["a", "b"]),
    ],
)
def test_check_parameter_accepts(name: str, value: object, expected: object) -> None:
    result = check_parameter(name, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("temperature", 5.01, "between 0 and 5"),
        ("temperature", -0.1, "between 0 and 5"),
        ("temperature", math.nan, "finite"),
        ("temperature", "NaN", "finite"),
        ("top_p", "inf", "finite"),
        ("min_p", float("-inf"), "finite"),
        ("top_p", True, "must be a number"),
        ("top_k", 1_000_001, "between 0 and 1000000"),
        ("repeat_last_n", -2, "between -1 and"),
        ("frequency_penalty", 2.5, "between -2 and 2"),
        ("num_predict", -3, "between -2 and"),
        ("seed", 2**63, "between"),
        ("seed", "1e3", "whole number"),
        ("seed", math.nan, "whole number"),
        ("stop", "", "must not be empty"),
        ("stop", 3, "string or a list of strings"),
        ("mirostat", 1, "unknown parameter"),
    ],
)
def test_check_parameter_rejects(name: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidRecipe, match=reason) as info:
        check_parameter(name, value)
    assert "line" not in str(info.value)


def test_parameter_table_is_complete() -> None:
    expected = {
        "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "repeat_last_n",
        "presence_penalty", "frequency_penalty", "num_ctx", "num_predict", "seed", "stop", "kv_cache_type",
        "draft_ngram",
    }  # fmt: skip
    assert set(PARAMETER_TYPES) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "recipe: base needs a model name"),
        ({"base": "m", "colour": "red"}, "recipe: unknown field 'colour'"),
        ({"base": "m", "parameters": {"temperature": 9}}, "recipe: temperature must be between"),
        ({"base": "m", "messages": [{"role": "bot", "content": "x"}]}, "recipe: MESSAGE role"),
        ({"base": "m", "template": "{{ lipsum.__globals__ }}"}, "recipe: TEMPLATE: chat template"),
        ({"base": "m", "system": 3}, "recipe: system must be text"),
        ({"base": "m\nn"}, "recipe: base must be one line"),
    ],
)
def test_from_dict_validates(data: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRecipe) as info:
        Recipe.from_dict(data)
    assert str(info.value).startswith(reason)


def test_from_dict_accepts_partial_dicts() -> None:
    recipe = Recipe.from_dict({"base": "m", "parameters": {"stop": "x", "top_k": "5"}})
    assert recipe == Recipe(base="m", parameters={"stop": ["x"], "top_k": 5})


def test_merged_over() -> None:
    base = Recipe(
        base="gemma3:270m",
        system="base system",
        template="chatml",
        parameters={"temperature": 1.0, "stop": ["a"], "top_k": 40},
        messages=[{"role": "user", "content": "base example"}],
        license="Gemma",
    )
    mine = Recipe(base="mine", system="my system", parameters={"temperature": 0.2, "stop": ["b"]})
    merged = mine.merged_over(base)
    assert merged == Recipe(
        base="mine",
        system="my system",
        template="chatml",
        parameters={"temperature": 0.2, "stop": ["b"], "top_k": 40},
        messages=[{"role": "user", "content": "base example"}],
        license="Gemma",
    )
    own_messages = Recipe(base="x", messages=[{"role": "user", "content": "mine"}])
    assert own_messages.merged_over(base).messages == [{"role": "user", "content": "mine"}]
    merged.parameters["stop"].append("c")
    assert base.parameters["stop"] == ["a"] and mine.parameters["stop"] == ["b"]


# -- comments, as Modelfile writers put them


def readme_recipe() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    return readme.split("### Recipes", 1)[1].split("```", 2)[1]


def test_readme_example_parses() -> None:
    recipe = parse_recipe(readme_recipe())
    assert recipe.base == "smollm2:135m"
    assert recipe.adapter == "./my-lora.gguf"
    assert recipe.parameters == {
        "temperature": 0.2,
        "num_ctx": 4096,
        "stop": ["<|im_end|>"],
        "kv_cache_type": "q8_0",
    }


def test_trailing_comments_are_dropped_outside_quotes() -> None:
    text = '''\
FROM smollm2:135m # the base
  # an indented whole-line comment
SYSTEM "keeps # inside quotes" # but not this
PARAMETER stop "<|im_end|>"   # a stop string
PARAMETER temperature 0.2	# after a tab
MESSAGE user Is C# a language? # yes
TEMPLATE """{{ messages[0]['content'] }} # kept in a block
""" # after the block
'''
    recipe = parse_recipe(text)
    assert recipe.base == "smollm2:135m"
    assert recipe.system == "keeps # inside quotes"
    assert recipe.parameters == {"stop": ["<|im_end|>"], "temperature": 0.2}
    assert recipe.messages == [{"role": "user", "content": "Is C# a language?"}]
    assert recipe.template == "{{ messages[0]['content'] }} # kept in a block"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM # only a comment", "Recipefile line 1: FROM needs a value (a # after a space"),
        ("FROM m\nPARAMETER # x", "Recipefile line 2: PARAMETER needs a name and a value"),
        ('FROM m\nSYSTEM "a"# x', "Recipefile line 2: unexpected text after closing quote"),
        ("FROM m\nFROM n # again", "Recipefile line 2: duplicate FROM (first on line 1)"),
    ],
)
def test_comment_errors_name_the_line(text: str, expected: str) -> None:
    assert expected in error_of(text)


@pytest.mark.parametrize("value", ["a # b", "#1 rule", "C# is fine", "ends with #"])
def test_values_with_hashes_round_trip(value: str) -> None:
    recipe = Recipe(base="m", system=value, parameters={"stop": [value]})
    assert parse_recipe(recipe.to_text()) == recipe


# -- files beside the recipe


def test_missing_adapter_file_says_no_such_file(tmp_path: Path) -> None:
    for adapter in ("./lora.gguf", "adapters/lora", "lora.safetensors", "../up.gguf"):
        with pytest.raises(InvalidRecipe) as info:
            parse_recipe(f"FROM m\n\nADAPTER {adapter} # mine", "r.recipe", folder=tmp_path)
        assert str(info.value) == (
            f"r.recipe line 3: ADAPTER {adapter!r}: no such file (paths are relative to the recipe's folder)"
        )


def test_missing_from_file_says_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidRecipe, match=r"^r line 2: FROM './m.gguf': no such file"):
        parse_recipe("# base\nFROM ./m.gguf", "r", folder=tmp_path)


def test_files_that_exist_and_model_names_pass(tmp_path: Path) -> None:
    (tmp_path / "lora.gguf").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.gguf").write_bytes(b"")
    looked_up: list[str] = []
    text = "FROM sub/base.gguf\nADAPTER lora.gguf\n"
    assert parse_recipe(text, folder=tmp_path, lookup=looked_up.append).adapter == "lora.gguf"
    text = "FROM hf.co/owner/repo:Q4_K_M\nADAPTER hf.co/owner/lora\n"
    parse_recipe(text, folder=tmp_path, lookup=looked_up.append)
    assert looked_up == ["hf.co/owner/repo:Q4_K_M", "hf.co/owner/lora"]


def test_lookup_errors_name_the_line(tmp_path: Path) -> None:
    def lookup(name: str) -> None:
        raise ModelNotFound(f"model {name!r} not found")

    with pytest.raises(InvalidRecipe, match=r"^r line 2: FROM: model 'nothing' not found$"):
        parse_recipe("\nFROM nothing # typo\n", "r", folder=tmp_path, lookup=lookup)
