"""A recipe's DRAFT model: a file beside the recipe is stored at `cove create`, a missing one is
refused on its line, and the draft's weights and KV cache count in every memory plan."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import FakeEngine
from gguf_writer import write_gguf

from cove.engine import fitting, planner
from cove.engine.memory import drafting_bytes, estimate, kv_bytes_per_token, plan_load
from cove.errors import BadRequest, DoesNotFit, InvalidRecipe, ModelNotFound
from cove.library.drafts import draft_of
from cove.library.local import Cove
from cove.machine import Machine
from cove.recipe import parse_recipe

MACHINES = Path(__file__).parent / "machines"


def _draft_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_gguf(folder / "small.gguf", tensors=[("w", (64, 64), 0)])


def test_a_draft_file_beside_the_recipe_is_stored_and_loads_after_it_moves(
    fake_cove: Cove, engine: FakeEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "recipes"
    path = _draft_file(folder / "drafts")
    manifest = fake_cove.create("drafted", "FROM tiny\nDRAFT drafts/small.gguf\n", folder=folder)
    ref = manifest.recipe["draft"]
    assert ref.startswith("sha256:")  # the stored recipe names the bytes, not the path
    stored = fake_cove.store.blobs.path(ref.removeprefix("sha256:"))
    assert stored.read_bytes() == path.read_bytes()
    path.unlink()  # the file the recipe named is gone: the model still loads its draft
    fake_cove.chat("drafted", [{"role": "user", "content": "hi"}])
    assert engine.loads[-1].draft_path == str(stored)
    fake_cove.store.collect_garbage()  # a blob a recipe's DRAFT names is kept
    assert stored.is_file()
    # The stored recipe, written out and created again, names the same blob.
    again = fake_cove.create("again", parse_recipe(f"FROM tiny\nDRAFT {ref}\n").to_text(), folder=folder)
    assert again.recipe["draft"] == ref


def test_a_missing_draft_is_refused_on_its_line(fake_cove: Cove, tmp_path: Path) -> None:
    with pytest.raises(InvalidRecipe, match=r"recipe line 2: DRAFT './gone.gguf': no such file"):
        fake_cove.create("x", "FROM tiny\nDRAFT ./gone.gguf\n", folder=tmp_path)
    with pytest.raises(InvalidRecipe, match="recipe line 2: DRAFT: "):
        fake_cove.create("x", "FROM tiny\nDRAFT nosuchmodel\n", folder=tmp_path)
    with pytest.raises(InvalidRecipe, match=r"DRAFT blob sha256:000000000000… is not in the store"):
        fake_cove.create("x", f"FROM tiny\nDRAFT sha256:{'0' * 64}\n", folder=tmp_path)
    with pytest.raises(ModelNotFound):
        fake_cove.model("x")  # nothing was stored


def test_a_remote_caller_names_a_draft_by_model_or_blob_never_by_path(fake_cove: Cove) -> None:
    with pytest.raises(BadRequest, match="DRAFT a file path works only from the CLI"):
        fake_cove.create_from_api("x", "FROM tiny\nDRAFT /etc/small.gguf\n", None, None)
    with pytest.raises(BadRequest, match="is not in the store; upload it to /api/blobs first"):
        fake_cove.create_from_api("x", f"FROM tiny\nDRAFT sha256:{'1' * 64}\n", None, None)
    made = fake_cove.create_from_api("x", "FROM tiny\nDRAFT tiny\n", None, None)
    assert made.recipe["draft"] == "tiny"


def test_a_draft_s_blob_removed_under_the_model_is_a_clear_error(fake_cove: Cove, tmp_path: Path) -> None:
    _draft_file(tmp_path)
    ref = fake_cove.create("drafted", "FROM tiny\nDRAFT small.gguf\n", folder=tmp_path).recipe["draft"]
    fake_cove.store.blobs.path(ref.removeprefix("sha256:")).unlink()
    with pytest.raises(ModelNotFound, match=r"the draft model blob sha256:.* is not in the store; create"):
        fake_cove.prepare("drafted")


def test_the_draft_s_kv_cache_counts_in_the_plan(fake_cove: Cove, tmp_path: Path) -> None:
    """The scheduler's plan (weights and KV cache of both), and `cove fit`'s figures."""
    _draft_file(tmp_path)
    fake_cove.create("drafted", "FROM tiny\nDRAFT small.gguf\n", folder=tmp_path)
    request, _, _ = fake_cove.prepare("drafted", {"num_ctx": 1024})
    tiny = fake_cove.model("tiny")
    draft = draft_of(fake_cove.model("drafted"), fake_cove.store)
    assert draft is not None and request.weights == tiny.size + draft.size
    alone, both = kv_bytes_per_token(tiny.info), kv_bytes_per_token(request.info)
    assert both == alone + kv_bytes_per_token(draft.info) and both > alone
    plain = estimate(tiny.info, tiny.size, 1024, 4)
    drafted = estimate(request.info, request.weights, 1024, 4)
    assert drafted.kv_cache == plain.kv_cache + 4 * 1024 * kv_bytes_per_token(draft.info)
    # Memory that holds the model alone with 4 slots holds fewer with its draft.
    assert plan_load("m", tiny.info, tiny.size, 1024, 4, plain.total)[0] == 4
    slots, _ = plan_load("m", request.info, request.weights, 1024, 4, plain.total, kv_type="f16")
    assert 1 <= slots < 4
    # `cove fit` plans a stored model with its draft the same way.
    with_draft = fitting.manifest_figures(
        fake_cove.model("drafted"), draft_of(fake_cove.model("drafted"), fake_cove.store)
    )
    assert with_draft.quants[with_draft.default_quant] == request.weights
    laptop = Machine.from_dict(json.loads((MACHINES / "desktop-16gb.json").read_text()))
    fit_alone = planner.plan(fitting.manifest_figures(tiny), laptop, num_ctx=1024, parallel=1)
    fit_both = planner.plan(with_draft, laptop, num_ctx=1024, parallel=1)
    assert fit_both.memory["kv_cache"] == fit_alone.memory["kv_cache"] + 1024 * kv_bytes_per_token(draft.info)
    assert fit_both.memory["weights"] == fit_alone.memory["weights"] + draft.size


def test_prompt_lookups_tables_count_in_every_memory_plan(fake_cove: Cove, engine: FakeEngine) -> None:
    tiny = fake_cove.model("tiny")
    plain = estimate(tiny.info, tiny.size, 1024, 1)
    drafting = estimate(tiny.info, tiny.size, 1024, 1, draft_ngram=32)
    assert drafting.total - plain.total == drafting_bytes(32, tiny.info.get("vocab_size")) > 0
    assert estimate(tiny.info, tiny.size, 1024, 1, embedding=True, draft_ngram=32).overhead == (
        estimate(tiny.info, tiny.size, 1024, 1, embedding=True).overhead
    )  # an embedder drafts nothing
    # Room for the model alone is not room for it with its drafter.
    with pytest.raises(DoesNotFit):
        plan_load("m", tiny.info, tiny.size, 1024, 1, plain.total, kv_type="f16", draft_ngram=32)
    laptop = Machine.from_dict(json.loads((MACHINES / "desktop-16gb.json").read_text()))
    figures = fitting.manifest_figures(tiny)
    off = planner.plan(figures, laptop, num_ctx=1024)
    on = planner.plan(replace(figures, draft_ngram=32), laptop, num_ctx=1024)
    assert on.memory["overhead"] - off.memory["overhead"] == drafting_bytes(32, tiny.info.get("vocab_size"))
    # The scheduler bounds a drafting engine's memory by the same count.
    fake_cove.chat("tiny", [{"role": "user", "content": "hi"}], options={"draft_ngram": 0})
    fake_cove.chat("tiny", [{"role": "user", "content": "hi"}], options={"draft_ngram": 32})
    without, drafted = engine.loads[-2], engine.loads[-1]
    assert drafted.draft_ngram == 32 and without.draft_ngram == 0
    assert drafted.memory_limit - without.memory_limit == 2 * drafting_bytes(32, tiny.info.get("vocab_size"))
