"""Reranking on the fake engine: a reranker's kind, the library's rerank call and its errors, the
rerank routes, and the knowledge base's use of it (settings, scores, fallback, the CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main
from click.testing import CliRunner
from fake_hf import FakeHF
from fakes import FakeEngine, FakeModel
from gguf_writer import make_gguf, write_gguf
from kb_helpers import FAKE_MODEL, write
from server_fixtures import EMBEDDER_METADATA, LiveServer, anyio_backend, client, make_app, tiny_cove

from cove.cli.main import cli
from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.errors import BadRequest, EngineCrashed, ModelNotFound
from cove.knowledge.embedder import HashEmbedder
from cove.knowledge.reranking import choose
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove
from cove.store import catalog
from cove.store.pull import pull

__all__ = ["anyio_backend"]

RERANKER_METADATA: dict[str, Any] = {**EMBEDDER_METADATA, "general.name": "reranker", "bert.pooling_type": 4}


def overlap(query: str, document: str) -> float:
    """The fake reranker's score: the share of the query's words the document has."""
    words = set(query.lower().split())
    return len(words & set(document.lower().replace(".", " ").split())) / max(len(words), 1)


class RerankingModel(FakeModel):
    def rerank(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.engine.fail:  # type: ignore[attr-defined]
            raise EngineCrashed("the engine for reranker stopped: it was killed by SIGKILL", why="killed")
        self.engine.requests.append(body)
        scores = [overlap(body["query"], d) for d in body["documents"]]
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[: body["top_n"]]
        results = [{"index": i, "relevance_score": scores[i]} for i in ranked]
        return {"model": str(self.spec.model_path), "results": results, "usage": {"prompt_tokens": 7}}


class RerankingEngine(FakeEngine):
    fail = False

    def __call__(self, spec: LoadSpec) -> FakeModel:
        self.loads.append(spec)
        return RerankingModel(self, spec)


def add_reranker(cove: Cove, name: str = "reranker") -> None:
    path = write_gguf(cove.store.home.parent / f"{name}.gguf", RERANKER_METADATA)
    cove.store.import_gguf(path, name, source="test")


@pytest.fixture
def engine() -> RerankingEngine:
    return RerankingEngine()


@pytest.fixture
def cove(cove_home: Path, engine: RerankingEngine) -> Iterator[Cove]:
    with tiny_cove(cove_home, engine) as made:
        add_reranker(made)
        yield made


DOCS = ["paris is the capital of france", "the cat sat on the mat", "cats like a warm mat"]


# -- a reranker in the store ----------------------------------------------------------------------


def test_a_gguf_with_rank_pooling_is_a_reranker(cove: Cove) -> None:
    assert catalog.model_kind(cove.model("reranker")) == "reranker"
    assert catalog.model_kind(cove.model("tiny")) != "reranker"
    result = CliRunner().invoke(cli, ["list", "--json"], env={"COVE_HOME": str(cove.settings.home)})
    kinds = {m["name"]: m["kind"] for m in json.loads(result.output)}
    assert kinds["reranker:latest"] == "reranker"


def test_a_reranker_pulled_from_hugging_face_is_a_reranker(
    cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with FakeHF() as hub:
        hub.add_file("acme", "Tiny-Reranker-GGUF", "tiny-reranker-f16.gguf", make_gguf(RERANKER_METADATA))
        settings = Settings(home=cove.settings.home, hf_endpoint=hub.url)
        manifest = pull(cove.store, "hf.co/acme/Tiny-Reranker-GGUF:F16", settings)
    assert catalog.model_kind(manifest) == "reranker"
    assert [r.index for r in cove.rerank(manifest.name, "cat mat", DOCS).results] == [1, 2, 0]


def test_rerank_scores_every_document_best_first(cove: Cove, engine: RerankingEngine) -> None:
    result = cove.rerank("reranker", "cat mat", DOCS)
    assert [r.index for r in result.results] == [1, 2, 0]
    assert [r.score for r in result.results] == [1.0, 0.5, 0.0]
    assert result.prompt_tokens == 7 and result.scores()[0] == 0.0
    spec = engine.loads[-1]
    assert spec.rerank and spec.embedding  # its own engine, with rank pooling


def test_top_n_keeps_the_best(cove: Cove) -> None:
    result = cove.rerank("reranker", "cat mat", DOCS, top_n=1)
    assert [r.index for r in result.results] == [1]


@pytest.mark.parametrize(
    ("query", "documents", "top_n", "message"),
    [
        ("", DOCS, None, "query must be a non-empty string"),
        ("q", [], None, "documents must be a non-empty list"),
        ("q", ["fine", 3], None, r"documents\[1\] must be a string"),
        ("q", ["fine", "  "], None, r"documents\[1\] is empty"),
        ("q", DOCS, 0, "top_n must be a whole number"),
        ("q", ["x"] * 1001, None, "too many documents"),
    ],
)
def test_bad_rerank_input_is_a_clear_error(
    cove: Cove, query: str, documents: list[Any], top_n: int | None, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        cove.rerank("reranker", query, documents, top_n=top_n)


def test_only_a_reranker_reranks_and_a_reranker_only_reranks(cove: Cove) -> None:
    with pytest.raises(BadRequest, match="cannot rerank"):
        cove.rerank("tiny", "q", DOCS)
    with pytest.raises(BadRequest, match="reranking model and cannot chat"):
        cove.chat("reranker", [{"role": "user", "content": "hi"}])
    with pytest.raises(BadRequest, match="reranking model and makes no vectors"):
        cove.embed("reranker", ["hi"])
    with pytest.raises(ModelNotFound):
        cove.rerank("nothing-here", "q", DOCS)


# -- the routes -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/rerank", "/api/rerank", "/rerank"])
async def test_the_rerank_routes_speak_the_common_api(cove: Cove, path: str) -> None:
    body = {"model": "reranker", "query": "cat mat", "documents": DOCS, "top_n": 2}
    async with client(make_app(cove)) as c:
        r = await c.post(path, json=body)
        texts = await c.post(path, json={**body, "return_documents": True, "max_chunks_per_doc": 5})
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "list" and data["model"] == "reranker"
    assert [x["index"] for x in data["results"]] == [1, 2]
    assert data["results"][0]["relevance_score"] >= data["results"][1]["relevance_score"]
    assert data["usage"]["total_tokens"] == 7
    assert texts.json()["results"][0]["document"] == {"text": DOCS[1]}


@pytest.mark.anyio
async def test_ollamas_show_says_a_reranker_only_reranks(cove: Cove) -> None:
    async with client(make_app(cove)) as c:
        reranker = await c.post("/api/show", json={"model": "reranker"})
        chat = await c.post("/api/show", json={"model": "tiny"})
    assert reranker.json()["capabilities"] == ["rerank"]
    assert "rerank" not in chat.json()["capabilities"]


@pytest.mark.anyio
async def test_cohere_style_documents_are_read_as_text(cove: Cove) -> None:
    docs = [{"text": d} for d in DOCS]
    async with client(make_app(cove)) as c:
        r = await c.post("/v1/rerank", json={"model": "reranker", "query": "paris", "documents": docs})
    assert r.json()["results"][0]["index"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "tiny", "query": "q", "documents": DOCS}, 400, "cannot rerank"),
        ({"model": "reranker", "query": "q"}, 400, "documents must be"),
        ({"model": "reranker", "query": 3, "documents": DOCS}, 400, "query must be"),
        ({"query": "q", "documents": DOCS}, 400, "name the reranking model"),
        ({"model": "reranker", "query": "q", "documents": DOCS, "top_n": "2"}, 400, "top_n"),
        ({"model": "reranker", "query": "q", "documents": DOCS, "return_documents": "yes"}, 400, "true or"),
        ({"model": "missing", "query": "q", "documents": DOCS}, 404, "missing"),
    ],
)
async def test_bad_rerank_requests_are_clear_errors(
    cove: Cove, body: dict[str, Any], status: int, message: str
) -> None:
    async with client(make_app(cove)) as c:
        r = await c.post("/v1/rerank", json=body)
    assert r.status_code == status
    assert message in json.dumps(r.json())


@pytest.mark.anyio
async def test_chat_and_embed_routes_refuse_a_reranker(cove: Cove) -> None:
    async with client(make_app(cove)) as c:
        chat = await c.post(
            "/api/chat", json={"model": "reranker", "messages": [{"role": "user", "content": "x"}]}
        )
        embed = await c.post("/v1/embeddings", json={"model": "reranker", "input": "x"})
    assert chat.status_code == 400 and "cannot chat" in chat.text
    assert embed.status_code == 400 and "makes no vectors" in embed.text


# -- the knowledge base -------------------------------------------------------------------------------

# Fused (BM25 + hashed bag of words) puts the note that repeats the words first; the fake
# reranker prefers the one with more of the question's distinct words.
NOTES = {
    "a.md": "# Garden\n\nwatering the garden watering the garden watering every day.",
    "b.md": "# Tools\n\nwhen is the best time for watering the garden plants in summer.",
    "c.md": "# Other\n\nthe tax office closes at noon on fridays.",
}
QUESTION = "best time for watering the garden plants"


def make_kb(cove: Cove, folder: Path, rerank: str | None = None) -> KnowledgeBase:
    kb = KnowledgeBase(cove, embedder_of=lambda model: HashEmbedder(model))
    kb.create("notes", rerank=rerank)
    for name, text in NOTES.items():
        write(folder, name, text)
    kb.add("notes", [folder])
    kb.sync("notes")
    return kb


def test_a_reranker_in_the_store_orders_the_passages(cove: Cove, tmp_path: Path) -> None:
    kb = make_kb(cove, tmp_path / "docs")
    fused = kb.find(["notes"], QUESTION, k=3, rerank="off")
    found = kb.find(["notes"], QUESTION, k=3)
    assert fused.reranked_by is None
    assert found.reranked_by == "reranker:latest" and found.warning is None
    assert found.passages[0].file == "b.md"
    top = found.passages[0]
    assert top.score == pytest.approx(overlap(QUESTION, top.text), abs=1e-6)  # the reranker's score
    scores = [p.score for p in found.passages]
    assert scores == sorted(scores, reverse=True)
    # the relevance threshold still reads cosine similarity, which reranking leaves alone
    by_id = {p.chunk_id: p.similarity for p in fused.passages}
    assert all(p.similarity == by_id[p.chunk_id] for p in found.passages)
    kb.close()


def test_the_collection_keeps_its_setting(cove: Cove, tmp_path: Path) -> None:
    kb = make_kb(cove, tmp_path / "docs", rerank="off")
    assert kb.info("notes").rerank == "off"
    assert kb.find(["notes"], QUESTION).reranked_by is None
    assert kb.find(["notes"], QUESTION, rerank="reranker").reranked_by == "reranker:latest"  # a search's own
    kb.set_rerank("notes", "reranker")
    kb.close()
    again = KnowledgeBase(cove, embedder_of=lambda model: HashEmbedder(model))
    assert again.info("notes").rerank == "reranker:latest"
    assert again.info("notes").to_json()["rerank"] == "reranker:latest"
    again.drop("notes")  # its setting goes with it
    again.create("notes")
    assert again.info("notes").rerank == "auto"
    again.close()


def test_a_model_that_is_not_a_reranker_is_refused_up_front(cove: Cove, tmp_path: Path) -> None:
    kb = KnowledgeBase(cove, embedder_of=lambda model: HashEmbedder(model))
    with pytest.raises(BadRequest, match="not a reranker"):
        kb.create("notes", rerank="tiny")
    with pytest.raises(ModelNotFound):
        kb.create("notes", rerank="no-such-model")
    assert kb.list() == []  # nothing half made
    kb.create("notes")
    with pytest.raises(BadRequest, match="not a reranker"):
        kb.find(["notes"], QUESTION, rerank="tiny")
    kb.close()


def test_a_failing_reranker_keeps_the_fused_order_and_says_so(
    cove: Cove, engine: RerankingEngine, tmp_path: Path
) -> None:
    kb = make_kb(cove, tmp_path / "docs")
    fused = kb.find(["notes"], QUESTION, k=3, rerank="off")
    engine.fail = True
    found = kb.find(["notes"], QUESTION, k=3)
    assert found.reranked_by is None
    assert found.warning and "reranking with reranker:latest failed" in found.warning
    assert [(p.chunk_id, p.score) for p in found.passages] == [(p.chunk_id, p.score) for p in fused.passages]
    kb.close()


def test_without_a_reranker_nothing_changes(cove_home: Path, tmp_path: Path) -> None:
    with Cove(Settings(home=cove_home), factory=RerankingEngine()) as bare:
        kb = make_kb(bare, tmp_path / "docs")
        found = kb.find(["notes"], QUESTION, k=3)
        assert found.reranked_by is None and found.warning is None and found.passages
        kb.close()


# -- the CLI, through a running server ----------------------------------------------------------------


def test_the_cli_sets_shows_and_uses_reranking(
    cove: Cove, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    for name, text in NOTES.items():
        write(folder, name, text)

    def run(*args: str) -> tuple[int, str, str]:
        return run_main(monkeypatch, capsys, "kb", *args)

    with LiveServer(make_app(cove)) as url:
        monkeypatch.setenv("COVE_HOST", url.removeprefix("http://"))
        code, out, _ = run("create", "notes", "--model", FAKE_MODEL, "--rerank", "reranker")
        assert code == 0 and "reranking: reranker:latest" in out
        assert run("add", "notes", str(folder))[0] == 0
        code, _, err = run("create", "bad", "--model", FAKE_MODEL, "--rerank", "tiny")
        assert code != 0 and "not a reranker" in err
        code, _, err = run("create", "bad", "--rerank", "reranker", "--no-rerank")
        assert code != 0 and "one of" in err
        code, out, _ = run("ls")
        assert "RERANK" in out and "reranker:latest" in out
        code, out, err = run("search", "notes", QUESTION, "-k", "3")
        assert code == 0 and "reranked by reranker:latest" in err and "[1] b.md" in out
        code, out, err = run("search", "notes", QUESTION, "--json")
        assert code == 0 and "reranked by reranker:latest" in err and json.loads(out)[0]["file"] == "b.md"
        code, out, err = run("search", "notes", QUESTION, "--no-rerank", "--json")
        assert code == 0 and "reranked by" not in err and json.loads(out)
        code, out, _ = run("rerank", "notes", "--no-rerank")
        assert code == 0 and "reranking: off" in out
        code, out, err = run("search", "notes", QUESTION)
        assert code == 0 and "reranked by" not in err
        code, out, _ = run("rerank", "notes", "--auto-rerank")
        assert code == 0 and "auto" in out


def test_which_reranker_a_search_over_several_collections_uses(cove: Cove) -> None:
    add_reranker(cove, "another")
    in_store = ["another:latest", "reranker:latest"]
    assert choose(cove, ["auto", "auto"], None, lambda: in_store) == "another:latest"  # first by name
    assert choose(cove, ["auto", "reranker:latest"], None, lambda: in_store) == "reranker:latest"
    assert choose(cove, ["off", "auto"], None, lambda: in_store) == "another:latest"
    assert choose(cove, ["off", "off"], None, lambda: in_store) is None
    assert choose(cove, ["auto"], None, lambda: []) is None  # nothing in the store
    assert choose(cove, ["off"], "reranker", lambda: in_store) == "reranker:latest"  # the search's own
    assert choose(cove, ["reranker:latest"], "off", lambda: in_store) is None
    with pytest.raises(BadRequest, match="not a reranker"):
        choose(cove, ["auto"], "tiny", lambda: in_store)
