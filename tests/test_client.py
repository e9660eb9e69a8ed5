"""Tests for cove.library.local.Cove on the fake engine: recipes applied, options checked, streams closed."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, FakeModel
from gguf_writer import DEFAULT_METADATA, write_gguf

from cove.engine.base import ChunkCallback
from cove.errors import BadRequest, CoveError, InvalidModelFile, InvalidName, InvalidRecipe, ModelNotFound
from cove.library.local import Cove

RECIPE = 'FROM tiny\nSYSTEM "be brief"\nPARAMETER temperature 0.3\nPARAMETER num_predict 7'
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`create` looks for FROM files in the working folder; keep that an empty one."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@pytest.fixture
def mine(fake_cove: Cove) -> Cove:
    fake_cove.create("mine", RECIPE)
    return fake_cove


def last_request(engine: FakeEngine) -> dict[str, Any]:
    return engine.requests[-1]


# -- the recipe reaches the engine -----------------------------------------------------------


def test_chat_applies_recipe(mine: Cove, engine: FakeEngine) -> None:
    answer = mine.chat("mine", HELLO)
    body = last_request(engine)
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["messages"][1:] == HELLO
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 7
    assert "num_predict" not in body
    assert answer.content == "You said: hello there"
    assert answer.finish_reason == "stop"
    assert answer.prompt_tokens == 5
    assert answer.completion_tokens == 4


def test_request_options_override_recipe(mine: Cove, engine: FakeEngine) -> None:
    answer = mine.chat("mine", HELLO, options={"temperature": 0.9, "num_predict": 2, "top_k": 5})
    body = last_request(engine)
    assert body["temperature"] == 0.9
    assert body["max_tokens"] == 2
    assert body["top_k"] == 5
    assert answer.content == "You said: "
    assert answer.finish_reason == "length"


def test_unlimited_num_predict_sends_no_limit(mine: Cove, engine: FakeEngine) -> None:
    mine.chat("mine", HELLO, options={"num_predict": -1})
    assert "max_tokens" not in last_request(engine)


def test_callers_system_message_replaces_recipes(mine: Cove, engine: FakeEngine) -> None:
    messages = [{"role": "system", "content": "be long"}, *HELLO]
    mine.chat("mine", messages)
    assert last_request(engine)["messages"] == messages


def test_recipe_messages_come_before_the_conversation(fake_cove: Cove, engine: FakeEngine) -> None:
    fake_cove.create("shots", 'FROM tiny\nMESSAGE user "2+2?"\nMESSAGE assistant "4"')
    fake_cove.chat("shots", HELLO)
    assert last_request(engine)["messages"] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        *HELLO,
    ]


def test_the_base_model_keeps_no_recipe(mine: Cove, engine: FakeEngine) -> None:
    mine.chat("tiny", HELLO)
    body = last_request(engine)
    assert body["messages"] == HELLO
    assert "temperature" not in body


# -- streaming -------------------------------------------------------------------------------


def test_stream_chat_joins_to_the_answer(mine: Cove) -> None:
    chunks = list(mine.stream_chat("mine", HELLO))
    assert "".join(c.content for c in chunks) == "You said: hello there"
    assert [c.done for c in chunks].count(True) == 1
    final = chunks[-1]
    assert final.done
    assert final.prompt_tokens == 5
    assert final.completion_tokens == 4
    assert final.tokens_per_s == 100.0
    assert any(c.finish_reason == "stop" for c in chunks)


def test_closing_the_stream_stops_generation(
    fake_cove: Cove, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished: list[dict[str, Any]] = []
    ended = threading.Event()
    original = FakeModel.chat

    def recording_chat(self: FakeModel, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> Any:
        try:
            result = original(self, body, on_chunk)
            finished.append(result)
            return result
        finally:
            ended.set()

    monkeypatch.setattr(FakeModel, "chat", recording_chat)
    engine.token_delay = 0.02
    words = " ".join(f"w{i}" for i in range(100))
    stream = fake_cove.stream_chat("tiny", [{"role": "user", "content": words}])
    first = [next(stream).content, next(stream).content]
    assert first == ["You ", "said: "]
    stream.close()
    assert ended.wait(10)
    sent = finished[0]["usage"]["completion_tokens"]
    assert sent < 102  # it stopped long before the 102 words of a full answer
    runner = fake_cove.scheduler.loaded()[0]
    for _ in range(1000):  # the slot is handed back just after the engine call returns
        if runner.active == 0:
            break
        ended.wait(0.01)
    assert runner.active == 0  # the slot is free again


# -- generate and embed ----------------------------------------------------------------------


def test_generate_uses_completion(mine: Cove, engine: FakeEngine) -> None:
    answer = mine.generate("mine", "once upon a time")
    body = last_request(engine)
    assert body["prompt"] == "once upon a time"
    assert "messages" not in body  # no chat template, no system prompt
    assert body["max_tokens"] == 7
    assert answer.content == "after: once upon a time"


def test_embed(fake_cove: Cove, engine: FakeEngine) -> None:
    result = fake_cove.embed("tiny", ["a", "b", "a"])
    vectors, tokens = result.vectors, result.prompt_tokens
    assert len(vectors) == 3
    assert vectors[0] == vectors[2] != vectors[1]
    assert len(vectors[0]) == 4
    assert tokens == 3
    assert engine.loads[-1].embedding is True
    with pytest.raises(BadRequest):
        fake_cove.embed("tiny", [])


def test_embedding_model_cannot_chat(fake_cove: Cove, tmp_path: Path, engine: FakeEngine) -> None:
    meta = {**DEFAULT_METADATA, "general.architecture": "bert", "bert.context_length": 128}
    fake_cove.import_model(write_gguf(tmp_path / "embedder.gguf", meta))
    with pytest.raises(BadRequest, match="embedding"):
        fake_cove.chat("embedder", HELLO)
    assert engine.requests == []


# -- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"temperature": -1},
        {"temperature": "hot"},
        {"top_k": "x"},
        {"top_k": 1.5},
        {"num_ctx": 0},
        {"num_predict": True},
        {"stop": [""]},
        {"bogus": 1},
    ],
)
def test_invalid_options(fake_cove: Cove, engine: FakeEngine, options: dict[str, Any]) -> None:
    with pytest.raises(CoveError) as info:
        fake_cove.chat("tiny", HELLO, options=options)
    assert info.value.status == 400
    assert engine.loads == []  # refused before anything was loaded
    assert engine.requests == []


def test_unknown_model(fake_cove: Cove, engine: FakeEngine) -> None:
    with pytest.raises(ModelNotFound):
        fake_cove.chat("nothing", HELLO)
    with pytest.raises(InvalidName):
        fake_cove.chat("../../etc/passwd", HELLO)
    assert engine.loads == []


# -- create ----------------------------------------------------------------------------------


def test_create_from_gguf_file_beside_recipe(fake_cove: Cove, tmp_path: Path, engine: FakeEngine) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    weights = write_gguf(folder / "weights.gguf", {**DEFAULT_METADATA, "general.name": "weights"})
    made = fake_cove.create("fromfile", 'FROM ./weights.gguf\nSYSTEM "hi"', folder)
    assert made.digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert made.name == "fromfile:latest"
    # Only the asked-for name is created: the file's stem does not become a model too.
    assert [m.name for m in fake_cove.models()] == ["fromfile:latest", "tiny:latest"]
    fake_cove.chat("fromfile", HELLO)
    assert engine.loads[-1].model_path == fake_cove.store.blobs.path(made.digest)
    assert last_request(engine)["messages"][0] == {"role": "system", "content": "hi"}


def test_create_from_file_does_not_replace_model_of_same_stem(fake_cove: Cove, tmp_path: Path) -> None:
    before = fake_cove.model("tiny")
    folder = tmp_path / "recipes"
    folder.mkdir()
    write_gguf(folder / "tiny.gguf", {**DEFAULT_METADATA, "general.name": "other"})
    made = fake_cove.create("other", "FROM ./tiny.gguf", folder)
    assert made.digest != before.digest
    assert fake_cove.model("tiny") == before


def test_create_from_missing_or_bad_file(fake_cove: Cove, tmp_path: Path) -> None:
    with pytest.raises(InvalidRecipe, match=r"line 1: FROM './missing.gguf': no such file"):
        fake_cove.create("x", "FROM ./missing.gguf", tmp_path)
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all")
    with pytest.raises(InvalidModelFile):
        fake_cove.create("x", "FROM ./junk.gguf", tmp_path)
    assert [m.name for m in fake_cove.models()] == ["tiny:latest"]
    assert fake_cove.store.blobs.all_digests() == {fake_cove.model("tiny").digest}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("FROM tiny\nPARAMETER temperature hot", 2),
        ("FROM tiny\n\nBOGUS x", 3),
        ("FROM tiny\nPARAMETER nonsense 1", 2),
        ('SYSTEM "x"', 1),
    ],
)
def test_create_with_bad_recipe(fake_cove: Cove, text: str, line: int) -> None:
    with pytest.raises(InvalidRecipe, match=f"line {line}:"):
        fake_cove.create("broken", text)
    assert not fake_cove.store.has("broken")


def test_create_from_unknown_model(fake_cove: Cove) -> None:
    # The library checks a recipe as the CLI does: the error names the line, and the closest name.
    with pytest.raises(
        InvalidRecipe, match=r"line 1: FROM: model 'nothing:latest' not found; did you mean 'tiny"
    ):
        fake_cove.create("x", "FROM nothing")
    assert not fake_cove.store.has("x")


def test_create_layers_over_another_recipe(mine: Cove, engine: FakeEngine) -> None:
    mine.create("mine2", "FROM mine\nPARAMETER temperature 0.5")
    mine.chat("mine2", HELLO)
    body = last_request(engine)
    assert body["messages"][0]["content"] == "be brief"
    assert body["temperature"] == 0.5
    assert body["max_tokens"] == 7


# -- what gets loaded ------------------------------------------------------------------------


def test_num_ctx_reaches_the_load_spec(fake_cove: Cove, engine: FakeEngine) -> None:
    fake_cove.chat("tiny", HELLO)
    assert engine.loads[-1].num_ctx == 256  # the default is capped by the model's trained context
    fake_cove.chat("tiny", HELLO, options={"num_ctx": 1024})
    assert engine.loads[-1].num_ctx == 1024
    assert "num_ctx" not in last_request(engine)
    fake_cove.create("wide", "FROM tiny\nPARAMETER num_ctx 2048")
    fake_cove.chat("wide", HELLO)
    assert engine.loads[-1].num_ctx == 2048
    fake_cove.chat("wide", HELLO, options={"num_ctx": 512})
    assert engine.loads[-1].num_ctx == 512


def test_models_are_reused_and_keep_alive_zero_unloads(fake_cove: Cove, engine: FakeEngine) -> None:
    fake_cove.chat("tiny", HELLO)
    fake_cove.chat("tiny", HELLO)
    assert len(engine.loads) == 1
    assert [info.name for info in fake_cove.loaded()] == ["tiny:latest"]
    fake_cove.chat("tiny", HELLO, keep_alive=0)
    assert fake_cove.loaded() == []
    assert len(engine.closed) == 1


def test_remove_unloads_and_deletes(fake_cove: Cove, engine: FakeEngine) -> None:
    fake_cove.chat("tiny", HELLO)
    fake_cove.remove("tiny")
    assert fake_cove.loaded() == []
    assert fake_cove.models() == []
    with pytest.raises(ModelNotFound):
        fake_cove.chat("tiny", HELLO)
