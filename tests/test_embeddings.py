"""Embeddings: inputs fitted to the context (truncate), dimensions, durations; fakes and the real engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, FakeModel
from server_fixtures import add_embedder, anyio_backend, client, make_app, tiny_cove

from cove.engine.base import LoadSpec
from cove.engine.embedding import Embeddings, fit_to_context, shorten
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.threads import MAX_EMBED_ENGINES, SHARED_POLL, SPIN_POLL, Threads, embedder_engines
from cove.errors import BadRequest
from cove.library.local import Cove
from cove.store.models import ModelStore

__all__ = ["anyio_backend"]

CLS, SEP = 101, 102


def bert_like(text: str) -> list[int]:
    """One token per word, between [CLS] and [SEP]."""
    return [CLS, *(len(w) for w in text.split()), SEP]


def never(text: str) -> list[int]:
    raise AssertionError("short text must not be tokenized")


# -- fitting inputs to the context --------------------------------------------------------------


def test_short_inputs_pass_untouched_without_tokenizing() -> None:
    fitted = fit_to_context(["a short text", [1, 2, 3]], 64, never, [CLS, SEP], truncate=False)
    assert fitted.inputs == ["a short text", [1, 2, 3]] and fitted.truncated == 0


def test_long_text_is_cut_and_keeps_its_end_token() -> None:
    text = " ".join(["word"] * 30)  # 32 tokens with [CLS] and [SEP]
    fitted = fit_to_context([text, "tiny"], 10, bert_like, [CLS, SEP], truncate=True)
    assert fitted.inputs[0] == [CLS, 4, 4, 4, 4, 4, 4, 4, 4, SEP]
    assert fitted.inputs[1] == "tiny" and fitted.truncated == 1


def test_long_text_that_fits_in_tokens_is_kept_as_text() -> None:
    text = "x" * 40  # 40 bytes could be 40 tokens; it is 3
    assert fit_to_context([text], 10, bert_like, [CLS, SEP], truncate=False).inputs == [text]


def test_with_truncate_off_a_long_input_is_a_clear_400() -> None:
    text = " ".join(["word"] * 30)
    with pytest.raises(BadRequest, match=r"input 1 is too long: 32 tokens, and emb takes 10"):
        fit_to_context(["ok", text], 10, bert_like, [CLS, SEP], truncate=False, model="emb")


def test_token_ids_are_cut_as_given() -> None:
    fitted = fit_to_context([list(range(20))], 8, never, [CLS, SEP], truncate=True)
    assert fitted.inputs == [list(range(8))]


@pytest.mark.parametrize(
    ("tokens", "specials", "expected"),
    [
        ([CLS, 5, 6, 7, 8, SEP], [CLS, SEP], [CLS, 5, 6, SEP]),  # BERT: [CLS] ... [SEP]
        ([2, 5, 6, 7, 8, 9], [2], [2, 5, 6, 7]),  # a BOS only (Gemma)
        ([5, 6, 7, 8, 9, 10], [], [5, 6, 7, 8]),  # nothing added (SmolLM2)
    ],
)
def test_shorten_keeps_the_specials_at_each_end(
    tokens: list[int], specials: list[int], expected: list[int]
) -> None:
    assert shorten(tokens, 4, specials) == expected


# -- the library and both APIs on the fake engine ------------------------------------------------


class SlowLoading(FakeEngine):
    """Takes LOAD_S to load a model, so that the load shows in the durations whatever the machine's load."""

    def __call__(self, spec: LoadSpec) -> FakeModel:
        time.sleep(LOAD_S)
        return super().__call__(spec)


LOAD_S = 0.3


def test_embed_reports_tokens_and_durations(cove_home: Path) -> None:
    with tiny_cove(cove_home, SlowLoading()) as cove:
        result = cove.embed("tiny", ["a", "b"])
        again = cove.embed("tiny", ["a"])  # loaded now: no load to wait for
    assert isinstance(result, Embeddings)
    assert len(result.vectors) == 2 and result.prompt_tokens == 2
    assert LOAD_S <= result.load_duration_s <= result.total_duration_s
    assert again.load_duration_s < LOAD_S


def test_dimensions_other_than_the_models_are_refused(fake_cove: Cove) -> None:
    with pytest.raises(BadRequest, match="8-dimensional vectors and cannot shorten them"):
        fake_cove.embed("tiny", ["a"], dimensions=3)


@pytest.mark.anyio
async def test_embed_routes_report_durations_and_refuse_dimensions(fake_cove: Cove) -> None:
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/embed", json={"model": "embedder", "input": ["one", "two"]})
        dims = await c.post("/api/embed", json={"model": "embedder", "input": "one", "dimensions": 3})
        oai = await c.post("/v1/embeddings", json={"model": "embedder", "input": "one", "dimensions": 3})
        tokens = await c.post("/v1/embeddings", json={"model": "embedder", "input": [1, 2, 3]})
        legacy = await c.post("/api/embeddings", json={"model": "embedder", "prompt": "one"})
    body = r.json()
    assert body["prompt_eval_count"] == 2
    assert 0 < body["load_duration"] <= body["total_duration"]
    assert dims.status_code == 400 and "cannot shorten" in dims.json()["error"]
    assert oai.status_code == 400 and "cannot shorten" in oai.json()["error"]["message"]
    assert len(tokens.json()["data"]) == 1  # one input given as token ids, not three inputs
    assert legacy.json() == {"embedding": body["embeddings"][0]}


@pytest.mark.anyio
async def test_truncate_reaches_the_engine(fake_cove: Cove, engine: FakeEngine, monkeypatch: Any) -> None:
    seen: list[dict[str, Any]] = []
    original = FakeEngine.__call__

    def recording(self: FakeEngine, spec: LoadSpec) -> Any:
        model = original(self, spec)
        embed = model.embed
        model.embed = lambda body: seen.append(body) or embed(body)  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(FakeEngine, "__call__", recording)
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        await c.post("/api/embed", json={"model": "embedder", "input": "one", "truncate": False})
        await c.post("/api/embed", json={"model": "embedder", "input": "one"})
        await c.post("/v1/embeddings", json={"model": "embedder", "input": "one"})
    assert [b["truncate"] for b in seen] == [False, True, True]


def test_a_bert_embedder_runs_as_an_engine_per_core_sharing_the_threads() -> None:
    assert embedder_engines(Threads(2, SPIN_POLL), physical=2) == (2, 1)
    assert embedder_engines(Threads(1, SHARED_POLL), physical=2) == (
        2,
        1,
    )  # one idle core: no barrier to stall
    assert embedder_engines(Threads(16, SPIN_POLL), physical=16) == (
        MAX_EMBED_ENGINES,
        16 // MAX_EMBED_ENGINES,
    )
    assert embedder_engines(Threads(3, SHARED_POLL), requested=3, physical=8) == (3, 1)  # COVE_NUM_THREADS
    assert embedder_engines(Threads(1, SPIN_POLL), requested=1, physical=8) == (1, 1)


# -- the real engine ----------------------------------------------------------------------------

LONG = " ".join(["word"] * 700)  # about 700 tokens: past 512, llama.cpp's default batch


@pytest.fixture(scope="module")
def embedder(model_home: Path) -> Iterator[LlamaCppModel]:
    """The bundled Gemma loaded as an embedder (any stored GGUF can be) with a 512-token context."""
    store = ModelStore(model_home)
    manifest = store.get("gemma3:270m")
    spec = LoadSpec(
        name="gemma-embed",
        model_path=store.model_path(manifest),
        digest=manifest.digest,
        num_ctx=512,
        embedding=True,
    )
    model = LlamaCppModel(spec)
    yield model
    model.close()


@pytest.mark.model
def test_a_long_input_is_truncated_to_the_context(embedder: LlamaCppModel) -> None:
    result = embedder.embed({"input": [LONG, "short"]})
    assert len(result["data"]) == 2 and result["truncated"] == 1
    assert result["usage"]["prompt_tokens"] == 512 + len(embedder._tokens().tokenize("short"))


@pytest.mark.model
def test_truncate_off_says_how_long_the_input_is(embedder: LlamaCppModel) -> None:
    with pytest.raises(BadRequest, match=r"input 0 is too long: \d{3} tokens, and gemma-embed takes 512"):
        embedder.embed({"input": [LONG], "truncate": False})


@pytest.mark.model
def test_an_input_as_long_as_the_context_fits(embedder: LlamaCppModel) -> None:
    tokens = embedder._tokens().tokenize(LONG)[:512]
    result = embedder.embed({"input": [tokens], "truncate": False})
    assert result["usage"]["prompt_tokens"] == 512 and result["truncated"] == 0
