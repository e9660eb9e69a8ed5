"""A BERT cross-encoder converted to a rerank GGUF scores in the real engine as transformers does.

There is no reranker on PyPI, so the test makes one: a tiny random BertForSequenceClassification
(one label) with a small WordPiece vocabulary, saved in Hugging Face's layout, converted by
cove, stored, and called through the library and the server. Its scores must equal
transformers' own logits for the same (query, document) pairs, and its order theirs.

transformers reads the pair with the document as token type 1; llama.cpp gives every token type
0, so the conversion adds the vocabulary's segment-B copy and cove writes the document with it
(engine/reranking.py): the scores agree only if that, the weights' places, the [CLS] pooler and
classifier head and the pair's special tokens are all right.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.config import Settings
from cove.engine.process import IsolatedModel
from cove.errors import InvalidRecipe, PullError
from cove.knowledge.embedder import HashEmbedder
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove
from cove.store import catalog
from cove.store.bert_gguf import convert, folder_reader

__all__ = ["anyio_backend"]

WORDS = [
    *("the", "a", "of", "to", "is", "in", "and", "what", "how", "where", "when", "who", "cat", "cats"),
    *("dog", "sat", "mat", "on", "sun", "hot", "star", "moon", "night", "sky", "paris", "france"),
    *("capital", "city", "river", "bank", "money", "water", "fish", "swim", "garden", "plant"),
    *("grow", "summer", "winter", "rain", "tax", "office", "close", "noon", "friday"),
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = "bcdefghijklmnopqrstuvwxyz"  # "a" is a word already: no piece twice
VOCAB = [*SPECIALS, *WORDS, "?", ".", ",", *LETTERS, *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]

#: How far the engine's scores may be from transformers' (seen here: about 1e-4).
TOLERANCE = 2e-3
QUERY = "where is the cat?"
DOCUMENTS = [
    "the cat sat on the mat.",
    "paris is the capital of france",
    "a dog swim in the river",
    "the sun is a hot star",
    "when do the tax office close? friday at noon",
    "xyzzy",
]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder a Hugging Face cross-encoder is saved as: config.json, model.safetensors, vocab.txt."""
    return save_cross_encoder(tmp_path_factory.mktemp("cross-encoder"), type_count=2)


def save_cross_encoder(folder: Path, type_count: int) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(11)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=type_count,
        num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # weights far from the tiny init, so the documents score far apart
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.4)
    model.save_pretrained(folder)
    return folder


def transformers_scores(folder: Path, query: str, documents: list[str]) -> list[float]:
    """transformers' logit for each pair as Hugging Face's own WordPiece tokenizer encodes it:
    `[CLS] query [SEP] document [SEP]`, the document and its [SEP] as token type 1."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertForSequenceClassification

    tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"))
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    scores = []
    for document in documents:
        pair = tokenizer.encode(query, document)
        ids, types = torch.tensor([pair.ids]), torch.tensor([pair.type_ids])
        if model.config.type_vocab_size == 1:  # a model without a second segment reads it as the first
            types = torch.zeros_like(ids)
        with torch.no_grad():
            logits = model(input_ids=ids, token_type_ids=types).logits
        scores.append(float(logits[0, 0]))
    return scores


reader = folder_reader


@pytest.fixture(scope="module")
def reranking_cove(cross_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cove]:
    """A Cove with the cross-encoder stored twice: exact (f32) and as cove converts by default (f16)."""
    home = tmp_path_factory.mktemp("home")
    exact, half = home.parent / "exact.gguf", home.parent / "half.gguf"
    assert convert(reader(cross_encoder), exact, "tiny-reranker", weights="f32").pooling == "rank"
    convert(reader(cross_encoder), half, "tiny-reranker")
    with Cove(Settings(home=home)) as cove:
        cove.store.import_gguf(exact, "tiny-reranker", source="test")
        cove.store.import_gguf(half, "tiny-reranker-f16", source="test")
        yield cove


@pytest.mark.model
def test_the_engine_scores_pairs_as_transformers_does(reranking_cove: Cove, cross_encoder: Path) -> None:
    assert catalog.model_kind(reranking_cove.model("tiny-reranker")) == "reranker"
    expected = transformers_scores(cross_encoder, QUERY, DOCUMENTS)
    result = reranking_cove.rerank("tiny-reranker", QUERY, DOCUMENTS)
    # llama.cpp's GELU is a tanh approximation: the last digits differ, nothing more
    assert result.scores() == pytest.approx(expected, abs=TOLERANCE)
    order = sorted(range(len(expected)), key=lambda i: -expected[i])
    assert [r.index for r in result.results] == order
    gaps = [expected[a] - expected[b] for a, b in itertools.pairwise(order)]
    assert min(gaps) > 2 * TOLERANCE, "the documents score too close together for the order to say much"
    half = reranking_cove.rerank("tiny-reranker-f16", QUERY, DOCUMENTS)
    assert half.scores() == pytest.approx(expected, abs=min(gaps) / 2)
    assert [r.index for r in half.results] == order


@pytest.mark.model
def test_a_cross_encoder_with_one_token_type_reranks_through_the_engines_own_pairs(
    tmp_path: Path, cove_home: Path
) -> None:
    """No second segment: the engine joins the pair itself (bos, query, eos, document, eos)."""
    folder = save_cross_encoder(tmp_path / "plain", type_count=1)
    out = tmp_path / "plain.gguf"
    convert(reader(folder), out, "plain-reranker", weights="f32")
    with Cove(Settings(home=cove_home)) as cove:
        cove.store.import_gguf(out, "plain-reranker", source="test")
        result = cove.rerank("plain-reranker", QUERY, DOCUMENTS)
    assert result.scores() == pytest.approx(transformers_scores(folder, QUERY, DOCUMENTS), abs=TOLERANCE)


@pytest.mark.model
def test_a_document_longer_than_the_context_is_cut_to_fit(reranking_cove: Cove) -> None:
    long = " ".join(["the cat sat on the mat."] * 60)  # about 420 tokens; the context is 128
    result = reranking_cove.rerank("tiny-reranker", QUERY, [long, DOCUMENTS[1]])
    assert result.truncated == 1 and len(result.results) == 2


@pytest.mark.model
@pytest.mark.anyio
async def test_the_rerank_route_serves_the_engine(reranking_cove: Cove, cross_encoder: Path) -> None:
    expected = transformers_scores(cross_encoder, QUERY, DOCUMENTS)
    body = {"model": "tiny-reranker", "query": QUERY, "documents": DOCUMENTS, "top_n": 3}
    async with client(make_app(reranking_cove)) as c:
        r = await c.post("/v1/rerank", json=body)
        embed = await c.post("/v1/embeddings", json={"model": "tiny-reranker", "input": "x"})
    assert r.status_code == 200
    results = r.json()["results"]
    best = sorted(range(len(expected)), key=lambda i: -expected[i])[:3]
    assert [x["index"] for x in results] == best
    assert [x["relevance_score"] for x in results] == pytest.approx(
        [expected[i] for i in best], abs=TOLERANCE
    )
    assert embed.status_code == 400 and "no vectors" in embed.text


# -- in the knowledge base, and in an engine process ----------------------------------------------


NOTES = {
    "pets.md": "# Pets\n\nthe cat sat on the mat.",
    "travel.md": "# Travel\n\nparis is the capital of france",
    "sky.md": "# Sky\n\nthe sun is a hot star",
}


def knowledge(cove: Cove, folder: Path, rerank: str) -> KnowledgeBase:
    for name, text in NOTES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBase(cove, path=folder / "knowledge.db", embedder_of=lambda model: HashEmbedder(model))
    kb.create("notes", rerank=rerank)
    kb.add("notes", [folder])
    kb.sync("notes")
    return kb


@pytest.mark.model
def test_a_search_is_ordered_and_scored_by_the_engines_reranker(
    reranking_cove: Cove, cross_encoder: Path, tmp_path: Path
) -> None:
    kb = knowledge(reranking_cove, tmp_path / "docs", "tiny-reranker")
    try:
        found = kb.find(["notes"], QUERY, k=3)
    finally:
        kb.close()
    assert found.reranked_by == "tiny-reranker:latest" and found.warning is None
    texts = [p.text for p in found.passages]
    expected = transformers_scores(cross_encoder, QUERY, texts)
    assert [p.score for p in found.passages] == pytest.approx(expected, abs=TOLERANCE)
    assert expected == sorted(expected, reverse=True)


@pytest.mark.model
def test_a_killed_reranker_engine_costs_only_the_reranking(
    reranking_cove: Cove, cross_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In its own engine process (as `cove serve` runs models): killed during a search, the search
    keeps its fused order and says why; the next search has a fresh engine and is reranked again.
    (Killed before the search, the scheduler sees it gone and loads a fresh one first.)"""
    home = tmp_path / "home"
    shutil.copytree(reranking_cove.settings.home, home)
    with Cove(Settings(home=home, engine="process"), factory=IsolatedModel) as isolated:
        kb = knowledge(isolated, tmp_path / "docs", "tiny-reranker")
        try:
            assert kb.find(["notes"], QUERY, k=3).reranked_by == "tiny-reranker:latest"
            (runner,) = isolated.scheduler.loaded()
            model = runner.model
            assert isinstance(model, IsolatedModel) and runner.spec.rerank
            monkeypatch.setattr(model, "rerank", killed_first(model))
            fused = kb.find(["notes"], QUERY, k=3)
            again = kb.find(["notes"], QUERY, k=3)
        finally:
            kb.close()
    assert fused.reranked_by is None and fused.passages
    assert fused.warning and "stopped: it was killed by SIGKILL" in fused.warning
    assert "passages are in fused order" in fused.warning
    assert again.reranked_by == "tiny-reranker:latest"


def killed_first(model: IsolatedModel) -> Any:
    """The model's rerank call, once its engine process has been killed and has ended: the
    engine dies between the scheduler's look at it and the call."""
    rerank = model.rerank

    def dying(*args: Any, **kwargs: Any) -> Any:
        os.kill(model.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while model.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        return rerank(*args, **kwargs)

    return dying


# -- the conversion itself (no engine) ---------------------------------------------------------------


def test_a_cross_encoder_converts_to_llamacpps_classification_head(
    cross_encoder: Path, tmp_path: Path
) -> None:
    import gguf

    out = tmp_path / "r.gguf"
    converted = convert(reader(cross_encoder), out, "tiny-reranker")
    assert converted.pooling == "rank" and converted.vocabulary == len(VOCAB)
    file = gguf.GGUFReader(out)
    names = {t.name for t in file.tensors}
    assert {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"} <= names
    assert not any(n.startswith(("pooler", "classifier")) for n in names)

    def value(key: str) -> Any:
        return file.fields[key].contents()

    assert value("bert.pooling_type") == int(gguf.PoolingType.RANK)
    assert value("bert.classifier.output_labels") == ["LABEL_0"]
    sep = VOCAB.index("[SEP]")
    assert value("tokenizer.ggml.eos_token_id") == sep and value("tokenizer.ggml.seperator_token_id") == sep
    assert value("tokenizer.ggml.add_eos_token") is True and value("tokenizer.ggml.add_sep_token") is False
    # the second segment: a copy of every token, named so that only the rerank template reads it
    assert value("cove.rerank.segment_b") == len(VOCAB)
    assert value("tokenizer.chat_template.rerank") == "[CLS]{query}[SEP]{document}"
    pieces, types = value("tokenizer.ggml.tokens"), value("tokenizer.ggml.token_type")
    assert len(pieces) == 2 * len(VOCAB) and pieces[len(VOCAB) + 7] == "<|b7|>"
    assert set(types[len(VOCAB) :]) == {int(gguf.TokenType.CONTROL)}
    embeddings = next(t for t in file.tensors if t.name == "token_embd.weight")
    assert embeddings.shape[1] == 2 * len(VOCAB)
    with Cove(Settings(home=tmp_path / "home")) as cove:  # the store reads its kind from the pooling type
        assert catalog.model_kind(cove.store.import_gguf(out, "r", source="test")) == "reranker"


def edited(folder: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the cross-encoder's folder with config.json changed."""
    import json
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    return copy


def test_a_classifier_of_several_labels_is_refused(cross_encoder: Path, tmp_path: Path) -> None:
    folder = edited(cross_encoder, tmp_path, id2label={"0": "NO", "1": "YES"}, num_labels=2)
    with pytest.raises(PullError, match="2 labels; cove reranks only with one-label cross-encoders"):
        convert(reader(folder), tmp_path / "r.gguf", "two-labels")


def test_a_vocabulary_with_a_piece_twice_is_refused(cross_encoder: Path, tmp_path: Path) -> None:
    folder = edited(cross_encoder, tmp_path)
    (folder / "vocab.txt").write_text("\n".join([*VOCAB, "cat"]) + "\n")
    with pytest.raises(PullError, match="the token 'cat' twice"):
        convert(reader(folder), tmp_path / "r.gguf", "twice")


def test_a_recipe_from_a_cross_encoders_folder_stores_a_reranker(cross_encoder: Path, tmp_path: Path) -> None:
    """`cove create NAME -f Recipe` with FROM a Hugging Face folder (a snapshot in its cache, say)."""
    with Cove(Settings(home=tmp_path / "home")) as cove:
        made = cove.create("folder-reranker", f"FROM {cross_encoder}\n")
        assert catalog.model_kind(made) == "reranker" and made.size > 0
        (tmp_path / "empty").mkdir()
        with pytest.raises(InvalidRecipe, match=r"has no config\.json and model\.safetensors"):
            cove.create("nothing", "FROM ./empty\n", folder=tmp_path)
