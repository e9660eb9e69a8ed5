"""Ollama's model-management routes on the fake engine: tags, show, ps, version, copy, delete,
blobs, create and pull (from a loopback fake Hugging Face)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_hf import FakeHF
from fakes import FakeEngine
from gguf_writer import FLOAT32, GGML_F32, UINT32, Typed, make_gguf, write_gguf
from server_fixtures import add_embedder, anyio_backend, client, make_app
from test_server_guard import assert_ollama_error

from cove import __version__
from cove.config import Settings
from cove.library.local import Cove
from cove.server.ollama_api import OLLAMA_API_VERSION
from cove.store.progress import PullProgress

__all__ = ["anyio_backend"]
pytestmark = pytest.mark.anyio

OCTETS = {"Content-Type": "application/octet-stream"}
DETAIL_KEYS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stored_files(cove: Cove) -> set[str]:
    return {p.name for p in cove.store.blobs.root.iterdir()}


async def test_version(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/api/version")
        root = await c.get("/")
    assert r.status_code == 200
    # Ollama's clients compare versions to decide what they may call: cove answers as a recent Ollama.
    assert r.json() == {"version": OLLAMA_API_VERSION, "cove": __version__}
    assert tuple(int(p) for p in r.json()["version"].split(".")) >= (0, 12, 0)
    assert root.status_code == 200 and root.text == "cove is running"


async def test_tags(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.get("/api/tags")
    assert r.status_code == 200
    (model,) = r.json()["models"]
    manifest = fake_cove.model("tiny")
    assert model["name"] == model["model"] == "tiny:latest"
    assert model["digest"] == manifest.manifest_digest and len(model["digest"]) == 64
    assert model["size"] == manifest.size > 0
    datetime.fromisoformat(model["modified_at"])
    assert set(model["details"]) == DETAIL_KEYS
    assert model["details"]["format"] == "gguf"
    assert model["details"]["family"] == "llama" and model["details"]["families"] == ["llama"]
    assert model["details"]["quantization_level"] == "F16"


async def test_show(fake_cove: Cove) -> None:
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/show", json={"model": "tiny"})
        e = await c.post("/api/show", json={"name": "embedder:latest"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {
        "modelfile",
        "parameters",
        "template",
        "system",
        "license",
        "details",
        "modified_at",
        "capabilities",
        "model_info",
    }
    assert body["modelfile"].startswith("FROM ")
    assert body["capabilities"] == ["completion"]
    assert body["model_info"]["general.architecture"] == "llama"
    assert body["model_info"]["llama.context_length"] == 256
    assert body["details"]["family"] == "llama"
    assert e.status_code == 200
    assert e.json()["capabilities"] == ["embedding"]
    assert e.json()["model_info"]["general.architecture"] == "bert"


RICH_METADATA: dict[str, Any] = {
    "general.architecture": "qwen2",
    "general.name": "Rich",
    "general.file_type": 15,
    "general.quantization_version": 2,
    "qwen2.context_length": 32768,
    "qwen2.block_count": 1,
    "qwen2.embedding_length": 8,
    "qwen2.feed_forward_length": 16,
    "qwen2.attention.head_count": 2,
    "qwen2.attention.head_count_kv": 1,
    "qwen2.attention.layer_norm_rms_epsilon": Typed(FLOAT32, 1e-6),
    "qwen2.rope.freq_base": Typed(FLOAT32, 1000000.0),
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "qwen2",
    "tokenizer.ggml.tokens": [f"t{i}" for i in range(200)],
    "tokenizer.ggml.bos_token_id": Typed(UINT32, 1),
    "tokenizer.chat_template": "{{ messages }}",
}


async def test_show_model_info_carries_the_gguf_metadata(fake_cove: Cove) -> None:
    path = write_gguf(fake_cove.store.home.parent / "rich.gguf", RICH_METADATA)
    fake_cove.store.import_gguf(path, "rich", source="test")
    async with client(make_app(fake_cove)) as c:
        info = (await c.post("/api/show", json={"model": "rich"})).json()["model_info"]
        verbose = (await c.post("/api/show", json={"model": "rich", "verbose": True})).json()["model_info"]
    assert info["general.architecture"] == "qwen2"
    assert info["general.parameter_count"] == 16  # counted from the tensors, as Ollama does
    assert info["general.file_type"] == 15 and info["general.quantization_version"] == 2
    assert info["qwen2.context_length"] == 32768 and info["qwen2.feed_forward_length"] == 16
    assert info["qwen2.attention.head_count"] == 2 and info["qwen2.attention.head_count_kv"] == 1
    assert info["qwen2.attention.layer_norm_rms_epsilon"] == 1e-6  # float32 printed short
    assert info["qwen2.rope.freq_base"] == 1000000.0
    assert info["tokenizer.ggml.model"] == "gpt2" and info["tokenizer.ggml.pre"] == "qwen2"
    assert info["tokenizer.ggml.bos_token_id"] == 1
    assert info["tokenizer.ggml.tokens"] == []  # the vocabulary is left out, as Ollama does
    assert "tokenizer.chat_template" not in info and "general.name" not in info
    assert verbose["tokenizer.ggml.tokens"] == []  # 200 tokens are never read into memory
    assert verbose["qwen2.context_length"] == 32768


async def test_show_model_info_verbose_keeps_short_arrays(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        plain = (await c.post("/api/show", json={"model": "tiny"})).json()["model_info"]
        verbose = (await c.post("/api/show", json={"model": "tiny", "verbose": True})).json()["model_info"]
    assert plain["tokenizer.ggml.tokens"] == [] and verbose["tokenizer.ggml.tokens"] == ["a", "b"]


async def test_ps(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        assert (await c.get("/api/ps")).json() == {"models": []}
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
        assert (await c.post("/api/chat", json={**chat, "keep_alive": "10m"})).status_code == 200
        r = await c.get("/api/ps")
    assert r.status_code == 200
    (model,) = r.json()["models"]
    assert model["name"] == "tiny:latest"
    assert model["digest"] == fake_cove.model("tiny").manifest_digest
    assert model["size"] > 0 and model["size_vram"] == 0
    assert model["context_length"] == 256
    expires = datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
    assert expires > datetime.now(UTC)
    assert set(model["details"]) == DETAIL_KEYS
    (loaded,) = fake_cove.loaded()
    assert model["num_parallel"] == loaded.num_parallel >= 1 and model["active"] == 0


async def test_ps_counts_slots_in_use(fake_cove: Cove, engine: FakeEngine) -> None:
    engine.token_delay = 0.05  # the answer takes long enough to be seen in flight
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "a b c d e f"}], "stream": False}
    async with client(make_app(fake_cove)) as c:
        answer = asyncio.create_task(c.post("/api/chat", json=chat))
        seen: list[dict[str, Any]] = []
        for _ in range(400):
            seen = (await c.get("/api/ps")).json()["models"]
            if seen and seen[0]["active"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (await answer).status_code == 200
        after = (await c.get("/api/ps")).json()["models"]
    assert seen and seen[0]["active"] == 1 and seen[0]["num_parallel"] >= 1
    assert after[0]["active"] == 0


async def test_ps_of_a_model_kept_forever_does_not_say_it_expires_now(fake_cove: Cove) -> None:
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    async with client(make_app(fake_cove)) as c:
        assert (await c.post("/api/chat", json={**chat, "keep_alive": -1})).status_code == 200
        (model,) = (await c.get("/api/ps")).json()["models"]
    expires = datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
    assert expires.year > datetime.now(UTC).year + 50


async def test_generate_with_keep_alive_zero_unloads(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/generate", json={"model": "tiny"})
        assert r.json()["done_reason"] == "load"
        assert [m["name"] for m in (await c.get("/api/ps")).json()["models"]] == ["tiny:latest"]
        r = await c.post("/api/generate", json={"model": "tiny", "keep_alive": 0})
        assert r.status_code == 200 and r.json()["done_reason"] == "unload"
        assert (await c.get("/api/ps")).json() == {"models": []}
    assert len(engine.closed) == 1
    assert engine.requests == []


async def test_copy_and_delete(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/copy", json={"source": "tiny", "destination": "Tiny-Copy:v2"})
        assert r.status_code == 200
        names = [m["name"] for m in (await c.get("/api/tags")).json()["models"]]
        assert names == ["tiny-copy:v2", "tiny:latest"]
        assert fake_cove.model("tiny-copy:v2").digest == fake_cove.model("tiny").digest

        r = await c.request("DELETE", "/api/delete", json={"model": "tiny"})
        assert r.status_code == 200
        assert [m["name"] for m in (await c.get("/api/tags")).json()["models"]] == ["tiny-copy:v2"]
        # The copy still points at the blob, so the bytes stay.
        assert fake_cove.store.blobs.exists(fake_cove.model("tiny-copy:v2").digest)

        r = await c.request("DELETE", "/api/delete", json={"model": "tiny"})
        assert "not found" in assert_ollama_error(r, 404)
        r = await c.request("DELETE", "/api/delete", json={"name": "tiny-copy:v2"})
        assert r.status_code == 200
        assert (await c.get("/api/tags")).json() == {"models": []}
    assert fake_cove.store.blobs.all_digests() == set()


async def test_delete_unloads_a_loaded_model(fake_cove: Cove, engine: FakeEngine) -> None:
    async with client(make_app(fake_cove)) as c:
        await c.post("/api/generate", json={"model": "tiny", "keep_alive": -1})
        assert len((await c.get("/api/ps")).json()["models"]) == 1
        assert (await c.request("DELETE", "/api/delete", json={"model": "tiny"})).status_code == 200
        assert (await c.get("/api/ps")).json() == {"models": []}
    assert len(engine.closed) == 1


# -- blobs and create ----------------------------------------------------------------------------


@pytest.fixture
def gguf() -> bytes:
    """A valid GGUF of a few KB, bigger than the small body limits the tests set."""
    return make_gguf(tensors=[("token_embd.weight", (8, 256), GGML_F32)])


async def test_blob_upload(fake_cove: Cove, gguf: bytes) -> None:
    digest = sha(gguf)
    before = stored_files(fake_cove)
    async with client(make_app(fake_cove, max_body=1024)) as c:
        assert (await c.head(f"/api/blobs/{digest}")).status_code == 404
        wrong = sha(gguf + b"x")
        r = await c.post(f"/api/blobs/{wrong}", content=gguf, headers=OCTETS)
        assert "mismatch" in assert_ollama_error(r, 400)
        assert stored_files(fake_cove) == before
        assert (await c.head(f"/api/blobs/{wrong}")).status_code == 404
        assert (await c.head(f"/api/blobs/{digest}")).status_code == 404

        r = await c.post(f"/api/blobs/{digest}", content=gguf, headers=OCTETS)
        assert r.status_code == 201
        assert (await c.head(f"/api/blobs/{digest}")).status_code == 200
        r = await c.post(f"/api/blobs/{digest}", content=gguf, headers=OCTETS)
        assert r.status_code == 200
    assert stored_files(fake_cove) == before | {digest.replace(":", "-")}
    assert fake_cove.store.blobs.path(digest[7:]).read_bytes() == gguf


@pytest.mark.parametrize("digest", ["sha256:abc", "md5-0123", "sha256:" + "g" * 64, "..%2F..%2Fconfig"])
async def test_blob_bad_digest(fake_cove: Cove, digest: str) -> None:
    before = stored_files(fake_cove)
    async with client(make_app(fake_cove)) as c:
        r = await c.head(f"/api/blobs/{digest}")
        assert r.status_code in (400, 404)
        r = await c.post(f"/api/blobs/{digest}", content=b"data", headers=OCTETS)
        assert r.status_code in (400, 404)
    assert stored_files(fake_cove) == before


async def test_cross_origin_blob_upload_is_refused(fake_cove: Cove, gguf: bytes) -> None:
    digest = sha(gguf)
    async with client(make_app(fake_cove)) as c:
        r = await c.post(
            f"/api/blobs/{digest}", content=gguf, headers={**OCTETS, "Origin": "https://evil.example"}
        )
    assert_ollama_error(r, 403)
    assert not fake_cove.store.blobs.exists(digest[7:])


async def test_create_from_uploaded_blob(fake_cove: Cove, engine: FakeEngine, gguf: bytes) -> None:
    digest = sha(gguf)
    async with client(make_app(fake_cove)) as c:
        await c.post(f"/api/blobs/{digest}", content=gguf, headers=OCTETS)
        r = await c.post(
            "/api/create", json={"model": "uploaded", "files": {"model.gguf": digest}, "stream": False}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "success"}
        assert fake_cove.model("uploaded").digest == digest[7:]
        chat = {"model": "uploaded", "messages": [{"role": "user", "content": "yo"}], "stream": False}
        r = await c.post("/api/chat", json=chat)
    assert r.json()["message"]["content"] == "You said: yo"
    assert engine.loads[-1].model_path == fake_cove.store.blobs.path(digest[7:])


async def test_create_streams_progress(fake_cove: Cove, gguf: bytes) -> None:
    digest = sha(gguf)
    async with client(make_app(fake_cove)) as c:
        await c.post(f"/api/blobs/{digest}", content=gguf, headers=OCTETS)
        r = await c.post("/api/create", json={"name": "streamed", "files": {"m.gguf": digest}})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    events = lines(r.text)
    assert events[0] == {"status": "parsing recipe"}
    assert events[-1] == {"status": "success"}
    assert fake_cove.store.has("streamed")


async def test_create_from_model_with_system_and_parameters(fake_cove: Cove, engine: FakeEngine) -> None:
    body = {
        "model": "terse",
        "from": "tiny",
        "system": "You are terse.",
        "parameters": {"temperature": 0.2, "stop": ["END", "STOP"], "num_ctx": 128},
        "stream": False,
    }
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/create", json=body)
        assert r.status_code == 200, r.text
        show = (await c.post("/api/show", json={"model": "terse"})).json()
        chat = {"model": "terse", "messages": [{"role": "user", "content": "hello"}], "stream": False}
        answer = (await c.post("/api/chat", json=chat)).json()
    assert show["system"] == "You are terse."
    assert show["parameters"].splitlines() == ["temperature 0.2", "stop END", "stop STOP", "num_ctx 128"]
    assert "SYSTEM" in show["modelfile"]
    assert answer["message"]["content"] == "You said: hello"
    sent = engine.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["temperature"] == 0.2 and sent["stop"] == ["END", "STOP"]
    assert engine.loads[-1].num_ctx == 128
    assert fake_cove.model("terse").digest == fake_cove.model("tiny").digest


async def test_tags_digest_tells_a_created_model_from_its_base(fake_cove: Cove) -> None:
    """llm-ollama takes models with one digest for aliases and would run the base, prompt-less."""
    create = {"model": "terse", "from": "tiny", "system": "You are terse.", "stream": False}
    async with client(make_app(fake_cove)) as c:
        assert (await c.post("/api/create", json=create)).status_code == 200
        assert (
            await c.post("/api/copy", json={"source": "terse", "destination": "terse2"})
        ).status_code == 200
        tags = {m["name"]: m["digest"] for m in (await c.get("/api/tags")).json()["models"]}
    assert fake_cove.model("terse").digest == fake_cove.model("tiny").digest  # one GGUF for both
    assert tags["terse:latest"] != tags["tiny:latest"]  # but two models
    assert tags["terse2:latest"] == tags["terse:latest"]  # a plain copy is the same model
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in tags.values())
    assert tags["tiny:latest"] == fake_cove.model("tiny").manifest_digest


async def test_create_from_modelfile_text(fake_cove: Cove) -> None:
    body = {
        "model": "fromtext",
        "modelfile": 'FROM tiny\nSYSTEM "be brief"\nPARAMETER top_k 5',
        "stream": False,
    }
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/create", json=body)
    assert r.status_code == 200, r.text
    recipe = fake_cove.model("fromtext").recipe_obj()
    assert recipe.system == "be brief" and recipe.parameters == {"top_k": 5}


async def test_create_never_reads_server_files(fake_cove: Cove, cove_home: Path) -> None:
    """A remote caller names uploaded blobs, never paths on the server's disk."""
    outside = write_gguf(cove_home.parent / "outside.gguf")
    attempts: list[dict[str, Any]] = [
        {"from": str(outside)},
        {"from": "outside.gguf"},
        {"modelfile": f"FROM {outside}"},
        {"modelfile": f"FROM {cove_home.parent}/outside"},
        {"from": "tiny", "path": str(outside)},
    ]
    async with client(make_app(fake_cove)) as c:
        for extra in attempts[:-1]:
            r = await c.post("/api/create", json={"model": "stolen", "stream": False, **extra})
            assert r.status_code in (400, 404), (extra, r.text)
            assert str(cove_home) not in r.text
            assert not fake_cove.store.has("stolen")
        r = await c.post("/api/create", json={"model": "stolen", "stream": False, **attempts[-1]})
    # `path` (an old Ollama field) is ignored: the model is made from `from` alone.
    assert r.status_code == 200
    assert fake_cove.model("stolen").digest == fake_cove.model("tiny").digest
    assert len(fake_cove.store.blobs.all_digests()) == 1


@pytest.mark.parametrize(
    ("extra", "status", "mentions"),
    [
        ({"files": {"model.gguf": "sha256:" + "1" * 64}}, 400, "upload it"),
        ({"files": {"weights.bin": "sha256:" + "1" * 64}}, 400, ".gguf"),
        ({"files": {"model.gguf": "sha256:nothex"}}, 400, "digest"),
        ({"from": "tiny", "parameters": {"temperature": "hot"}}, 400, "temperature"),
        ({"from": "tiny", "parameters": {"warp_speed": 9}}, 400, "warp_speed"),
        ({"from": "tiny", "quantize": "q4_K_M"}, 400, "quantize"),
        ({"modelfile": "FROM tiny\nBOGUS x"}, 400, "BOGUS"),
        ({"from": "nosuch"}, 404, "nosuch"),
        ({}, 400, "from"),
        ({"system": "hi"}, 400, "from"),
    ],
)
async def test_create_errors(fake_cove: Cove, extra: dict[str, Any], status: int, mentions: str) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/create", json={"model": "made", "stream": False, **extra})
        message = assert_ollama_error(r, status)
        assert mentions in message
        r = await c.post("/api/create", json={"model": "made", **extra})
    assert r.status_code == 200
    events = lines(r.text)
    assert mentions in events[-1]["error"]
    assert not fake_cove.store.has("made")


async def test_create_needs_a_name(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/create", json={"from": "tiny", "stream": False})
    assert "model" in assert_ollama_error(r, 400)


async def test_create_from_junk_blob(fake_cove: Cove) -> None:
    junk = b"not a gguf at all" * 10
    async with client(make_app(fake_cove)) as c:
        assert (await c.post(f"/api/blobs/{sha(junk)}", content=junk, headers=OCTETS)).status_code == 201
        r = await c.post(
            "/api/create", json={"model": "junk", "files": {"x.gguf": sha(junk)}, "stream": False}
        )
    assert "GGUF" in assert_ollama_error(r, 400)
    assert not fake_cove.store.has("junk")


async def test_embed_routes(fake_cove: Cove) -> None:
    add_embedder(fake_cove)
    async with client(make_app(fake_cove)) as c:
        r = await c.post("/api/embed", json={"model": "embedder", "input": ["one", "two"]})
        single = await c.post("/api/embed", json={"model": "embedder", "input": "one"})
        legacy = await c.post("/api/embeddings", json={"model": "embedder", "prompt": "one"})
        empty = await c.post("/api/embed", json={"model": "embedder", "input": []})
    body = r.json()
    assert body["model"] == "embedder"
    assert len(body["embeddings"]) == 2 and body["embeddings"][0] != body["embeddings"][1]
    assert body["prompt_eval_count"] == 2
    assert single.json()["embeddings"] == [body["embeddings"][0]]
    assert legacy.json() == {"embedding": body["embeddings"][0]}
    assert "empty" in assert_ollama_error(empty, 400)


# -- pull from a fake Hugging Face --------------------------------------------------------------


@pytest.fixture
def hf_cove(
    cove_home: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Cove, FakeHF]]:
    with FakeHF() as hf:
        hf.add_file("acme", "Tiny-GGUF", "tiny-Q4_K_M.gguf", make_gguf())
        hf.add_file("acme", "Tiny-GGUF", "README.md", b"# tiny", lfs=False)
        monkeypatch.setenv("COVE_HF_ENDPOINT", hf.url)
        cove = Cove(Settings.from_env(), factory=engine)
        yield cove, hf
        cove.close()


async def test_pull_streams_progress(hf_cove: tuple[Cove, FakeHF]) -> None:
    cove, hf = hf_cove
    async with client(make_app(cove)) as c:
        r = await c.post("/api/pull", json={"model": "hf.co/acme/Tiny-GGUF"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        events = lines(r.text)
        tags = (await c.get("/api/tags")).json()["models"]
    assert events[0] == {"status": "pulling manifest"}
    assert events[-1] == {"status": "success"}
    assert all("error" not in e for e in events)
    sized = [e for e in events if "total" in e]
    assert sized and sized[-1]["total"] == len(make_gguf())
    assert all(e["digest"].startswith("sha256:") for e in sized)
    assert [t["name"] for t in tags] == ["hf.co/acme/tiny-gguf:q4_k_m"]
    assert hf.seen("GET", "tiny-Q4_K_M.gguf")


async def test_pull_without_streaming(hf_cove: tuple[Cove, FakeHF]) -> None:
    cove, _ = hf_cove
    async with client(make_app(cove)) as c:
        r = await c.post("/api/pull", json={"name": "hf.co/acme/Tiny-GGUF", "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}
    assert cove.store.has("hf.co/acme/tiny-gguf:q4_k_m")


async def test_pull_unknown(hf_cove: tuple[Cove, FakeHF]) -> None:
    cove, _ = hf_cove
    async with client(make_app(cove)) as c:
        r = await c.post("/api/pull", json={"model": "nosuch-model:1b", "stream": False})
        assert "nosuch-model" in assert_ollama_error(r, 404)
        r = await c.post("/api/pull", json={"model": "hf.co/acme/Missing-GGUF", "stream": False})
        assert r.status_code >= 400
        assert "error" in r.json()
        r = await c.post("/api/pull", json={"model": "nosuch-model:1b"})
    assert r.status_code == 200
    events = lines(r.text)
    assert "nosuch-model" in events[-1]["error"]
    assert cove.models() == []


async def test_concurrent_uploads_of_one_blob(fake_cove: Cove, gguf: bytes) -> None:
    """Two clients sending the same blob at once must not interleave into one corrupt file."""
    digest = sha(gguf)
    half = len(gguf) // 2

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(gguf), half):
            yield gguf[start : start + half]
            await asyncio.sleep(0.01)  # let the other upload write its piece in between

    async with client(make_app(fake_cove)) as c:
        results = await asyncio.gather(
            *(c.post(f"/api/blobs/{digest}", content=body(), headers=OCTETS) for _ in range(2))
        )
        assert sorted(r.status_code for r in results) in ([200, 201], [201, 201]), [r.text for r in results]
        assert (await c.head(f"/api/blobs/{digest}")).status_code == 200
    stored = fake_cove.store.blobs.path(digest[7:]).read_bytes()
    assert sha(stored) == digest
    assert not [p for p in fake_cove.store.blobs.root.iterdir() if "partial" in p.name]


async def test_pull_failing_unexpectedly_is_never_a_success(
    hf_cove: tuple[Cove, FakeHF], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cove, _ = hf_cove

    def broken(ref: str, progress: Any) -> None:
        progress(PullProgress(status="pulling manifest"))
        raise OSError(f"I/O error under {cove.settings.home}")

    monkeypatch.setattr(cove, "pull", broken)
    async with client(make_app(cove), raise_app_exceptions=False) as c:
        whole = await c.post("/api/pull", json={"model": "hf.co/acme/Tiny-GGUF", "stream": False})
        streamed = await c.post("/api/pull", json={"model": "hf.co/acme/Tiny-GGUF"})
    assert "internal error (OSError)" in assert_ollama_error(whole, 500)
    events = lines(streamed.text)
    assert events[0] == {"status": "pulling manifest"}
    assert events[-1] == {"error": "internal error (OSError); see the server log"}
    assert str(cove.settings.home) not in whole.text + streamed.text
    assert any("OSError" in (r.exc_text or "") for r in caplog.records)


async def test_blob_upload_waits_for_another_writer_of_the_same_blob(fake_cove: Cove, gguf: bytes) -> None:
    digest = sha(gguf)
    blobs = fake_cove.store.blobs
    async with client(make_app(fake_cove)) as c:
        with blobs.writing(digest[7:]):  # a pull or import of the same blob, here or in another process
            upload = asyncio.ensure_future(c.post(f"/api/blobs/{digest}", content=gguf, headers=OCTETS))
            await asyncio.sleep(0.3)
            assert not upload.done()  # it waits, rather than truncating the other writer's partial
            partial = blobs.partial(digest[7:], resume=False)
            partial.write(gguf)
            partial.finish()
        r = await asyncio.wait_for(upload, 10)
    assert r.status_code == 200  # the other writer stored it; nothing written twice
    assert blobs.path(digest[7:]).read_bytes() == gguf
