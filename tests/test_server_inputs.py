"""Bad request bodies and options on the fake engine: each is a 400/404 in its API's shape, never a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeEngine, FakeModel
from gguf_writer import write_gguf
from server_fixtures import LiveServer, add_embedder, anyio_backend, client, make_app
from test_server_guard import assert_ollama_error, assert_openai_error

from cove.config import Settings
from cove.engine.base import ChunkCallback, LoadSpec
from cove.errors import EngineError
from cove.library.local import Cove

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
ROUTES = [
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/show",
    "/api/copy",
    "/api/create",
    "/api/pull",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
]
BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty"),
    "blank": (b"  \n ", "empty"),
    "invalid json": (b'{"model": "tiny",', "invalid JSON"),
    "trailing garbage": (b'{"model": "tiny"} x', "invalid JSON"),
    "invalid utf-8": (b'{"model": "tiny\xff\xfe"}', "UTF-8"),
    "lone surrogate": (
        b'{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
        "surrogate",
    ),
    "lone low surrogate": (b'{"model": "tiny", "prompt": "\\udfff", "input": "x"}', "surrogate"),
    "surrogate in a key": (b'{"\\ud800": 1}', "surrogate"),
    "array": (b"[]", "JSON object"),
    "string": (b'"tiny"', "JSON object"),
    "null": (b"null", "JSON object"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested"),
    "deep nesting in a field": (
        b'{"model": "tiny", "options": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "nested",
    ),
}


def assert_error(response: httpx.Response, path: str, status: int) -> str:
    if path.startswith("/v1"):
        return assert_openai_error(response, status)
    return assert_ollama_error(response, status)


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("kind", list(BAD_BODIES))
async def test_unreadable_bodies(fake_cove: Cove, engine: FakeEngine, path: str, kind: str) -> None:
    body, says = BAD_BODIES[kind]
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, content=body, headers=JSON)
    assert says in assert_error(r, path, 400)
    assert engine.requests == []
    assert [m.name for m in fake_cove.models()] == ["tiny:latest"]


OLLAMA_CHAT: dict[str, Any] = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
}
OAI_CHAT: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
IMAGE = ["iVBORw0KGgo="]
TEXTLESS = [{"type": "text"}]
IMAGE_PARTS: list[dict[str, Any]] = [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]

WRONG_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("/api/chat", {**OLLAMA_CHAT, "messages": "hi"}, "messages"),
    ("/api/chat", {**OLLAMA_CHAT, "model": 5}, "model"),
    ("/api/chat", {**OLLAMA_CHAT, "model": ""}, "model"),
    ("/api/chat", {**OLLAMA_CHAT, "options": "fast"}, "options"),
    ("/api/chat", {**OLLAMA_CHAT, "stream": [1]}, "stream"),
    ("/api/chat", {**OLLAMA_CHAT, "messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    ("/api/chat", {**OLLAMA_CHAT, "messages": [{"role": "user", "content": 7}]}, "content"),
    ("/api/chat", {**OLLAMA_CHAT, "bogus": 1}, "unknown field 'bogus'"),
    ("/api/chat", {**OLLAMA_CHAT, "messages": [{"role": "user", "content": "hi", "x": 1}]}, "unknown field"),
    ("/api/chat", {**OLLAMA_CHAT, "keep_alive": "soon"}, "keep_alive"),
    ("/api/generate", {"model": "tiny", "prompt": ["a"], "stream": False}, "prompt"),
    ("/api/generate", {"model": "tiny", "prompt": "a", "extra": True}, "unknown field 'extra'"),
    ("/api/embed", {"model": "tiny", "input": 3}, "input"),
    ("/api/copy", {"source": "tiny"}, "destination"),
    ("/api/copy", {"source": "tiny", "destination": "../../escape"}, "invalid model name"),
    ("/api/show", {"model": "tiny", "verbose": "very"}, "verbose"),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": "hi"}, "messages"),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": OAI_CHAT["messages"]}, "model"),
    ("/v1/chat/completions", {**OAI_CHAT, "n": 2}, "n"),
    ("/v1/chat/completions", {**OAI_CHAT, "stream_options": {"include_usage": "maybe"}}, "include_usage"),
    ("/v1/chat/completions", {**OAI_CHAT, "bogus": 1}, "unknown field 'bogus'"),
    ("/v1/completions", {"model": "tiny", "prompt": 5}, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "a", "best_of": 3}, "best_of"),
    ("/v1/embeddings", {"model": "tiny", "input": {"a": 1}}, "input"),
    ("/v1/embeddings", {"model": "tiny", "input": "a", "encoding_format": "hex"}, "encoding_format"),
    ("/api/chat", {**OLLAMA_CHAT, "messages": [{"role": "user", "content": "?", "images": IMAGE}]}, "vision"),
    ("/api/generate", {"model": "tiny", "prompt": "what is this?", "images": IMAGE}, "vision"),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": [{"role": "user", "content": IMAGE_PARTS}]}, "vision"),
    (
        "/v1/chat/completions",
        {**OAI_CHAT, "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        "audio",
    ),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": [{"role": "user", "content": [{"type": "x"}]}]}, "'x'"),
    ("/v1/chat/completions", {**OAI_CHAT, "messages": [{"role": "user", "content": TEXTLESS}]}, "'text'"),
]


@pytest.mark.parametrize(("path", "body", "mentions"), WRONG_FIELDS)
async def test_wrong_field_types_and_unknown_fields(
    fake_cove: Cove, engine: FakeEngine, path: str, body: dict[str, Any], mentions: str
) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, json=body)
    message = assert_error(r, path, 400)
    assert mentions in message
    assert engine.requests == []
    assert [m.name for m in fake_cove.models()] == ["tiny:latest"]


BAD_OPTIONS: list[tuple[str, str]] = [
    ("temperature", "NaN"),
    ("temperature", "Infinity"),
    ("temperature", "-1"),
    ("temperature", '"hot"'),
    ("temperature", "true"),
    ("num_predict", "-5"),
    ("num_predict", str(10**12)),
    ("top_k", '"x"'),
    ("top_k", "1.5"),
    ("num_ctx", "-1"),
    ("num_ctx", "NaN"),
    ("seed", str(2**70)),
    ("stop", "[1]"),
    ("stop", '[""]'),
]


@pytest.mark.parametrize(("name", "raw"), BAD_OPTIONS)
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed"])
async def test_bad_ollama_options(
    fake_cove: Cove, engine: FakeEngine, path: str, name: str, raw: str
) -> None:
    rest = {
        "/api/chat": '"messages": [{"role": "user", "content": "hi"}], "stream": false',
        "/api/generate": '"prompt": "hi", "stream": false',
        "/api/embed": '"input": "hi"',
    }[path]
    body = f'{{"model": "tiny", {rest}, "options": {{"{name}": {raw}}}}}'
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, content=body, headers=JSON)
    message = assert_ollama_error(r, 400)
    assert name in message
    assert engine.requests == []


BAD_OPENAI: list[tuple[str, str]] = [
    ("temperature", "NaN"),
    ("temperature", "-Infinity"),
    ("temperature", "-1"),
    ("max_tokens", "-5"),
    ("max_tokens", "0"),
    ("max_tokens", str(10**12)),
    ("max_completion_tokens", "-5"),
    ("top_k", '"x"'),
    ("top_p", "2"),
    ("presence_penalty", "NaN"),
    ("num_ctx", "-1"),
    ("logit_bias", '{"5": NaN}'),
]


@pytest.mark.parametrize(("name", "raw"), BAD_OPENAI)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
async def test_bad_openai_sampling(
    fake_cove: Cove, engine: FakeEngine, path: str, name: str, raw: str
) -> None:
    if path == "/v1/completions" and name in ("max_completion_tokens", "num_ctx"):
        name = "max_tokens"
    start = '"messages": [{"role": "user", "content": "hi"}]' if "chat" in path else '"prompt": "hi"'
    body = f'{{"model": "tiny", {start}, "{name}": {raw}}}'
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, content=body, headers=JSON)
    message = assert_openai_error(r, 400)
    assert name in message
    assert engine.requests == []


async def test_good_options_reach_the_engine(fake_cove: Cove, engine: FakeEngine) -> None:
    options = {"temperature": 0, "num_predict": 2, "top_k": "40", "stop": "END", "seed": 7.0}
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/chat", json={**OLLAMA_CHAT, "options": options})
    assert r.status_code == 200
    sent = engine.requests[-1]
    assert (sent["temperature"], sent["max_tokens"], sent["top_k"], sent["stop"], sent["seed"]) == (
        0.0,
        2,
        40,
        ["END"],
        7,
    )
    assert r.json()["done_reason"] == "length"
    assert r.json()["eval_count"] == 2


# As LangChain's OllamaEmbeddings / ChatOllama send them: every option they know, unset ones null.
NULL_OPTIONS: dict[str, Any] = {
    "mirostat": None,
    "num_ctx": None,
    "num_gpu": None,
    "repeat_penalty": None,
    "temperature": None,
    "stop": None,
    "top_k": None,
    "num_predict": None,
    "seed": None,
}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {**OLLAMA_CHAT, "options": NULL_OPTIONS}),
        (
            "/api/chat",
            {
                **OLLAMA_CHAT,
                "options": {**NULL_OPTIONS, "num_ctx": 512},
                "format": None,
                "tools": None,
                "keep_alive": None,
                "think": None,
            },
        ),
        ("/api/generate", {"model": "tiny", "prompt": "hi", "stream": False, "options": NULL_OPTIONS}),
        ("/api/generate", {"model": "tiny", "prompt": "hi", "stream": False, "images": None, "raw": None}),
        ("/api/embed", {"model": "tiny", "input": ["hi"], "options": NULL_OPTIONS, "keep_alive": None}),
        ("/api/embed", {"model": "tiny", "input": "hi", "truncate": None, "dimensions": None}),
        ("/api/embeddings", {"model": "tiny", "prompt": "hi", "options": NULL_OPTIONS}),
        (
            "/v1/chat/completions",
            {
                **OAI_CHAT,
                "stop": None,
                "tools": None,
                "tool_choice": None,
                "response_format": None,
                "stream": None,
                "stream_options": None,
                "n": None,
                "temperature": None,
                "max_tokens": None,
                "keep_alive": None,
                "messages": [{"role": "user", "content": "hi", "name": None}],
            },
        ),
        ("/v1/completions", {"model": "tiny", "prompt": "hi", "stop": None, "stream": None, "echo": None}),
        ("/v1/embeddings", {"model": "tiny", "input": "hi", "encoding_format": None, "dimensions": None}),
    ],
)
async def test_null_means_not_set(fake_cove: Cove, path: str, body: dict[str, Any]) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, json=body)
    assert r.status_code == 200, r.text
    assert "error" not in r.json()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {**OLLAMA_CHAT, "model": None}),
        ("/v1/chat/completions", {**OAI_CHAT, "messages": None}),
        ("/api/embed", {"model": "tiny", "input": None}),
    ],
)
async def test_null_for_a_required_field_is_still_refused(
    fake_cove: Cove, engine: FakeEngine, path: str, body: dict[str, Any]
) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, json=body)
    assert_error(r, path, 400)
    assert engine.requests == []


async def test_null_options_leave_the_defaults_in_charge(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        plain = await c.post("/api/chat", json=OLLAMA_CHAT)
        r = await c.post("/api/chat", json={**OLLAMA_CHAT, "options": {"num_ctx": None, "temperature": 0.3}})
    assert plain.status_code == r.status_code == 200, r.text
    assert engine.requests[-1]["temperature"] == 0.3
    assert "temperature" not in engine.requests[0]
    assert len({load.num_ctx for load in engine.loads}) == 1  # null num_ctx is the default size


UNKNOWN = "nosuch-model:7b"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/chat", {"model": UNKNOWN, "messages": [{"role": "user", "content": "hi"}]}),
        (
            "POST",
            "/api/chat",
            {"model": UNKNOWN, "messages": [{"role": "user", "content": "hi"}], "stream": False},
        ),
        ("POST", "/api/generate", {"model": UNKNOWN, "prompt": "hi"}),
        ("POST", "/api/generate", {"model": UNKNOWN}),
        ("POST", "/api/embed", {"model": UNKNOWN, "input": "hi"}),
        ("POST", "/api/embeddings", {"model": UNKNOWN, "prompt": "hi"}),
        ("POST", "/api/show", {"model": UNKNOWN}),
        ("POST", "/api/copy", {"source": UNKNOWN, "destination": "x"}),
        ("DELETE", "/api/delete", {"model": UNKNOWN}),
        ("POST", "/api/create", {"model": "x", "from": UNKNOWN, "stream": False}),
        ("POST", "/v1/chat/completions", {"model": UNKNOWN, "messages": [{"role": "user", "content": "hi"}]}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": UNKNOWN, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
        ("POST", "/v1/completions", {"model": UNKNOWN, "prompt": "hi"}),
        ("POST", "/v1/embeddings", {"model": UNKNOWN, "input": "hi"}),
        ("GET", f"/v1/models/{UNKNOWN}", None),
    ],
)
async def test_unknown_model_is_404(
    fake_cove: Cove, engine: FakeEngine, method: str, path: str, body: dict[str, Any] | None
) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.request(method, path, json=body)
    message = assert_error(r, path, 404)
    assert UNKNOWN in message
    assert engine.requests == [] and engine.loads == []
    assert not fake_cove.store.has("x")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/chat",
            {"model": "embedder", "messages": [{"role": "user", "content": "hi"}], "stream": False},
        ),
        ("/api/chat", {"model": "embedder", "messages": [{"role": "user", "content": "hi"}]}),
        ("/api/generate", {"model": "embedder", "prompt": "hi", "stream": False}),
        ("/v1/chat/completions", {"model": "embedder", "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"model": "embedder", "prompt": "hi", "stream": True}),
    ],
)
async def test_embedding_model_cannot_chat(
    fake_cove: Cove, engine: FakeEngine, path: str, body: dict[str, Any]
) -> None:
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        r = await c.post(path, json=body)
        message = assert_error(r, path, 400)
        assert "embedding" in message
        assert engine.requests == []
        r = await c.post("/api/embed", json={"model": "embedder", "input": ["a", "b"]})
    assert r.status_code == 200
    vectors = r.json()["embeddings"]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0
    assert [s.embedding for s in engine.loads] == [True]


# -- error bodies leak nothing -------------------------------------------------------------------

SECRET_PROMPT = "my-bank-pin-is-4921"
KEY = "sk-secret-key-do-not-echo"


class _PathDroppingModel(FakeModel):
    """Fails the way an engine might: with the model's absolute path in the message."""

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if on_chunk is not None:
            on_chunk({"choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]})
        raise EngineError(f"failed reading {self.spec.model_path} while answering")

    complete = chat


class _FailingEngine(FakeEngine):
    def __call__(self, spec: LoadSpec) -> FakeModel:
        if spec.name.startswith("broken"):
            raise EngineError(f"could not load {spec.model_path}: bad tensor")
        return _PathDroppingModel(self, spec)


async def test_error_bodies_hide_home_key_and_prompt(cove_home: Path) -> None:
    cove = Cove(Settings.from_env(), factory=_FailingEngine())
    gguf = write_gguf(cove_home.parent / "m.gguf")
    cove.store.import_gguf(gguf, "tiny", source="test")
    cove.store.import_gguf(gguf, "broken", source="test")
    auth = {"Authorization": f"Bearer {KEY}"}
    user = [{"role": "user", "content": SECRET_PROMPT}]
    requests: list[tuple[str, str, Any]] = [
        ("/api/chat", "broken", {"messages": user, "stream": False}),
        ("/api/chat", "broken", {"messages": user}),
        ("/api/chat", "tiny", {"messages": user, "stream": False}),
        ("/api/chat", "tiny", {"messages": user}),
        ("/api/generate", "tiny", {"prompt": SECRET_PROMPT}),
        ("/api/chat", "tiny", {"messages": user, "options": {"temperature": -1}}),
        ("/api/chat", "tiny", {"messages": [{"role": SECRET_PROMPT, "content": SECRET_PROMPT}]}),
        ("/api/chat", "tiny", {"messages": [{"role": "user", "content": SECRET_PROMPT, "images": ["x"]}]}),
        ("/api/chat", "nosuch", {"messages": user}),
        ("/v1/chat/completions", "broken", {"messages": user}),
        ("/v1/chat/completions", "tiny", {"messages": user}),
        ("/v1/chat/completions", "tiny", {"messages": user, "stream": True}),
        ("/v1/completions", "tiny", {"prompt": SECRET_PROMPT, "stream": True}),
        ("/v1/chat/completions", "tiny", {"messages": user, "temperature": "warm"}),
        ("/v1/chat/completions", "tiny", {"messages": [{"role": "user", "content": {"x": SECRET_PROMPT}}]}),
        ("/api/create", "made", {"files": {"model.gguf": "sha256:" + "0" * 64}, "system": SECRET_PROMPT}),
        ("/api/create", "made", {"from": "tiny", "system": SECRET_PROMPT, "parameters": {"bogus": 1}}),
    ]
    errors = 0
    async with client(make_app(cove, api_keys=(KEY,))) as c:
        for path, model, extra in requests:
            r = await c.post(path, json={"model": model, **extra}, headers=auth)
            text = r.text
            assert "Traceback" not in text
            assert str(cove_home) not in text, (path, text)
            assert str(cove_home.resolve()) not in text
            assert KEY not in text
            if r.status_code >= 400 or '"error"' in text:
                errors += 1
                assert SECRET_PROMPT not in text, (path, text)
    assert errors == len(requests)
    cove.close()


async def test_text_content_parts_reach_the_engine(fake_cove: Cove, engine: FakeEngine) -> None:
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            "/v1/chat/completions", json={**OAI_CHAT, "messages": [{"role": "user", "content": parts}]}
        )
    assert r.status_code == 200, r.text
    assert len(engine.requests) == 1


# -- an unexpected error leaves the kept-open connection usable ------------------------------------


class _CrashingModel(FakeModel):
    """A bug in cove, not a user error: a plain exception, before or after the first token."""

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        said = json.dumps(body.get("messages") or body.get("prompt"))
        if "crash-late" in said and on_chunk is not None:
            on_chunk({"choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]})
            raise RuntimeError("a bug after the first token")
        if "crash" in said:
            raise RuntimeError("a bug")
        return super().chat(body, on_chunk)

    complete = chat


class _CrashingEngine(FakeEngine):
    def __call__(self, spec: LoadSpec) -> FakeModel:
        return _CrashingModel(self, spec)


def _said(text: str, stream: bool) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], "stream": stream}


CRASHES: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", _said("crash", False)),
    ("/api/chat", _said("crash", True)),
    ("/api/chat", _said("crash-late", True)),
    ("/v1/chat/completions", _said("crash", False)),
    ("/v1/chat/completions", _said("crash", True)),
    ("/v1/chat/completions", _said("crash-late", True)),
]


def test_an_unexpected_error_keeps_the_connection(cove_home: Path) -> None:
    """uvicorn drops a connection whose app raised, without a word: every request after a 500
    on a kept-open client then failed. Each crash here is followed by requests on the same client."""
    cove = Cove(Settings.from_env(), factory=_CrashingEngine())
    cove.store.import_gguf(write_gguf(cove_home.parent / "m.gguf"), "tiny", source="test")
    broken: list[str] = []
    with LiveServer(make_app(cove)) as url, httpx.Client(base_url=url, timeout=30) as c:
        for path, body in CRASHES:
            r = c.post(path, json=body)
            assert r.status_code == 500 or '"error"' in r.text, (path, r.status_code, r.text)
            assert "Traceback" not in r.text and "a bug" not in r.text
            for _ in range(3):
                try:
                    ok = c.post("/api/chat", json=_said("hi", False))
                    assert ok.json()["message"]["content"] == "You said: hi"
                except httpx.TransportError as exc:
                    broken.append(f"{path} {body['messages'][0]['content']}: {exc!r}")
    cove.close()
    assert broken == []


def test_a_crash_mid_stream_ends_the_stream_in_its_own_framing(cove_home: Path) -> None:
    cove = Cove(Settings.from_env(), factory=_CrashingEngine())
    cove.store.import_gguf(write_gguf(cove_home.parent / "m.gguf"), "tiny", source="test")
    with LiveServer(make_app(cove)) as url, httpx.Client(base_url=url, timeout=30) as c:
        lines = c.post("/api/chat", json=_said("crash-late", True)).text.splitlines()
        assert json.loads(lines[-1])["error"]
        events = c.post("/v1/chat/completions", json=_said("crash-late", True)).text.split("\n\n")
        assert events[-2:] == ["data: [DONE]", ""]
        assert json.loads(events[-3].removeprefix("data: "))["error"]["message"]
    cove.close()
