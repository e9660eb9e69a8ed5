"""Speculative decoding: the recipe's DRAFT line and draft_ngram parameter, and the engine's settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import xllamacpp
from fakes import FakeEngine

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.speculative import DEFAULT_DRAFT_NGRAM, DEFAULT_NGRAM, Ngram, apply_speculative
from cove.errors import InvalidRecipe
from cove.library.local import Cove
from cove.recipe import Recipe, parse_recipe
from cove.store.models import ModelStore

KIND = xllamacpp.common_speculative_type


def test_a_recipe_names_its_draft_and_ngram_drafting() -> None:
    recipe = parse_recipe("FROM big:latest\nDRAFT small:latest\nPARAMETER draft_ngram 16\n")
    assert recipe.draft == "small:latest" and recipe.parameters["draft_ngram"] == 16
    assert parse_recipe(recipe.to_text()) == recipe
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    child = parse_recipe("FROM mine\nSYSTEM hi\n").merged_over(recipe)
    assert child.draft == "small:latest"  # a recipe layered on another keeps its draft


def test_bad_speculative_lines_are_refused() -> None:
    with pytest.raises(InvalidRecipe, match="line 3: duplicate DRAFT"):
        parse_recipe("FROM a\nDRAFT b\nDRAFT c\n")
    with pytest.raises(InvalidRecipe, match="draft_ngram must be between 0 and 64"):
        parse_recipe("FROM a\nPARAMETER draft_ngram 65\n")


def test_the_default_drafts_32_and_is_a_setting() -> None:
    assert Settings.from_env({}).draft_ngram == 32
    assert Settings.from_env({"COVE_DRAFT_NGRAM": "0"}).draft_ngram == 0
    assert Settings.from_env({"COVE_DRAFT_NGRAM": "8"}).draft_ngram == 8


def test_engine_params_for_each_kind_of_drafting(tmp_path: Path) -> None:
    params = xllamacpp.CommonParams()
    apply_speculative(params, 0)
    assert params.speculative.types == [KIND.COMMON_SPECULATIVE_TYPE_NONE]  # off: untouched
    apply_speculative(params, 12)
    assert params.speculative.types == [KIND.COMMON_SPECULATIVE_TYPE_NGRAM_MOD]
    mod = params.speculative.ngram_mod
    assert (mod.n_max, mod.n_min, mod.n_match) == (12, 12, DEFAULT_NGRAM.n_match)  # n_min <= n_max
    simple = xllamacpp.CommonParams()
    apply_speculative(simple, 12, ngram=Ngram("simple", n_match=6, n_min=0))
    assert simple.speculative.types == [KIND.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
    lookup = simple.speculative.ngram_simple
    assert (lookup.size_n, lookup.size_m) == (6, 12) and simple.speculative.draft.n_max >= 12
    both = xllamacpp.CommonParams()
    both.cache_type_k = both.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_Q8_0
    apply_speculative(both, 8, str(tmp_path / "draft.gguf"))
    assert both.speculative.types == [
        KIND.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE,
        KIND.COMMON_SPECULATIVE_TYPE_NGRAM_MOD,
    ]
    assert both.speculative.draft.mparams.path == str(tmp_path / "draft.gguf")
    # The draft's KV cache is of the target's type, as the memory plan counts it.
    assert both.speculative.draft.cache_type_k == xllamacpp.ggml_type.GGML_TYPE_Q8_0


def test_a_spec_with_drafting_is_another_load() -> None:
    spec = LoadSpec(name="m", model_path=Path("m.gguf"), digest="d", num_ctx=256)
    assert replace(spec, draft_ngram=16).key != spec.key
    assert replace(spec, draft_path="s.gguf").key != spec.key


PASSAGE = (
    "The keeper climbed the hundred and twelve steps every evening, lit the lamp, wrote the weather "
    "in his logbook, and watched the ships pass until the morning came grey over the water."
)


@pytest.mark.model
def test_prompt_lookup_drafts_and_the_model_accepts(model_home: Path) -> None:
    store = ModelStore(model_home)
    manifest = store.get("gemma3:270m")
    spec = LoadSpec(
        name=manifest.name,
        model_path=store.model_path(manifest),
        digest=manifest.digest,
        num_ctx=1024,
        template=manifest.recipe_obj().template,
    )
    body = {
        "messages": [{"role": "user", "content": f"Repeat exactly, word for word:\n\n{PASSAGE}"}],
        "max_tokens": 64,
        "temperature": 0,
    }
    texts = {}
    for name, load in (("off", spec), ("ngram", replace(spec, draft_ngram=16))):
        model = LlamaCppModel(load)
        try:
            result = model.chat(dict(body))
        finally:
            model.close()
        texts[name] = result["choices"][0]["message"]["content"]
        timings = result["timings"]
        if name == "ngram":
            assert timings["draft_n"] > 0 and timings["draft_n_accepted"] > 0
        else:
            assert not timings.get("draft_n")
    assert texts["ngram"] == texts["off"]  # greedy: drafting changes the speed, never the answer


def test_a_recipe_s_drafting_reaches_the_load(fake_cove: Cove, engine: FakeEngine) -> None:
    """PARAMETER draft_ngram and DRAFT go into the load; the draft's weights count in the plan."""
    fake_cove.create("drafted", "FROM tiny\nPARAMETER draft_ngram 8\nDRAFT tiny\n")
    request, _, _ = fake_cove.prepare("drafted")
    tiny = fake_cove.model("tiny")
    assert request.weights == 2 * tiny.size
    fake_cove.chat("drafted", [{"role": "user", "content": "hi"}])
    (load,) = engine.loads
    assert load.draft_ngram == 8
    assert load.draft_path == str(fake_cove.store.model_path(tiny))
    fake_cove.chat("drafted", [{"role": "user", "content": "hi"}], options={"draft_ngram": 0})
    assert engine.loads[-1].draft_ngram == 0  # the request's option wins: another load


@pytest.mark.model
def test_a_draft_model_drafts_for_its_target(real_home: Path) -> None:
    """gemma3:270m drafting for itself (one vocabulary): drafts are made and accepted, through
    the library as a user's recipe would ask."""
    with Cove(Settings.from_env()) as cove:
        cove.create("self-drafted", "FROM gemma3:270m\nDRAFT gemma3:270m\n")
        messages = [{"role": "user", "content": f"Repeat exactly:\n\n{PASSAGE}"}]
        assert cove.chat("self-drafted", messages, options={"num_predict": 32, "temperature": 0}).content
        (runner,) = cove.scheduler.loaded()
        assert runner.spec.draft_path == str(cove.store.model_path(cove.model("gemma3:270m")))
        raw = runner.model.chat({"messages": messages, "max_tokens": 32, "temperature": 0})
        assert raw["timings"]["draft_n"] > 0 and raw["timings"]["draft_n_accepted"] > 0


LONG_PASSAGE = (
    "The lighthouse stood at the end of a long spit of black rock, and for forty years the same "
    "keeper had climbed its one hundred and twelve steps every evening to light the lamp. He kept "
    "a logbook in which he wrote the weather, the ships that passed, and the birds that rested on "
    "the gallery rail. In winter the spray froze on the glass and he scraped it away with a brass "
    "scraper his father had given him."
)


@pytest.mark.model
def test_a_turn_says_the_same_with_speculation_on_and_off(real_home: Path) -> None:
    """Greedy speculation changes the speed, not the text: a repeat-and-edit turn (drafted) and
    a plain question, through the library, with prompt lookup on (cove's default) and off.
    Where the model's next token is a near-tie (babble past the end of a quoted passage), the
    batched check of a draft can tip it the other way: llama.cpp's logits for a batch are not
    bit-identical to one token's. These turns stay on what the model is sure of."""
    edit = (
        f"Repeat the following passage exactly, but write 'tower' instead of 'lighthouse'.\n\n{LONG_PASSAGE}"
    )
    prompts = (edit, "Why is the sky blue? Answer in a short paragraph.")
    answers: dict[int, list[str]] = {}
    with Cove(Settings.from_env()) as cove:
        for drafted in (DEFAULT_DRAFT_NGRAM, 0):
            options = {"num_predict": 80, "temperature": 0, "draft_ngram": drafted}
            for prompt in prompts:
                turn = cove.chat("gemma3:270m", [{"role": "user", "content": prompt}], options=options)
                answers.setdefault(drafted, []).append(turn.content)
            (runner,) = cove.scheduler.loaded()
            assert runner.spec.draft_ngram == drafted
            if drafted:
                body = {"messages": [{"role": "user", "content": edit}], "max_tokens": 80}
                timings = runner.model.chat({**body, "temperature": 0})["timings"]
                assert timings["draft_n"] > 0 and timings["draft_n_accepted"] > 0
    assert answers[DEFAULT_DRAFT_NGRAM] == answers[0] and all(answers[0])
