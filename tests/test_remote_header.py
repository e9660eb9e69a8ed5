"""Reading a Hugging Face GGUF's header by HTTP Range, against the loopback fake Hugging Face."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fake_hf import FakeHF
from gguf_writer import GGML_F32, GGML_Q4_K, make_gguf

from cove.config import Settings
from cove.engine import planner
from cove.errors import InvalidModelFile, InvalidName, ModelNotFound, PullError
from cove.net.gate import EgressRefused
from cove.store import remote_header

VOCAB = [f"token-{i:06d}" for i in range(150_000)]  # about 2.4 MB of header, as real ones are
METADATA = {
    "general.architecture": "llama",
    "general.name": "Big",
    "general.license": "apache-2.0",
    "general.file_type": 15,  # Q4_K_M
    "llama.context_length": 131072,
    "llama.block_count": 16,
    "llama.embedding_length": 2048,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "tokenizer.ggml.tokens": VOCAB,
}
TENSORS = [
    ("token_embd.weight", (2048, 4096), GGML_Q4_K),
    *[(f"blk.{i}.ffn.weight", (2048, 1024), GGML_Q4_K) for i in range(16)],
    ("output_norm.weight", (2048,), GGML_F32),
]
DATA = make_gguf(METADATA, TENSORS)


@pytest.fixture
def fake() -> Iterator[FakeHF]:
    with FakeHF() as hf:
        hf.honour_range_end = True
        hf.add_file("acme", "Big-GGUF", "big-Q4_K_M.gguf", DATA)
        hf.add_file("acme", "Big-GGUF", "big-Q8_0.gguf", DATA + bytes(len(DATA)))
        hf.add_file("acme", "Big-GGUF", "big-F16-00001-of-00002.gguf", b"split")
        hf.add_file("acme", "Big-GGUF", "README.md", b"# Big", lfs=False)
        yield hf


def settings(fake: FakeHF, offline: bool = False) -> Settings:
    return replace(Settings.from_env(), hf_endpoint=fake.url, offline=offline)


def test_header_only_is_read_and_parsed(fake: FakeHF) -> None:
    assert len(DATA) > 6 << 20  # the weights are several times the header
    model = remote_header.read_remote("hf.co/acme/Big-GGUF", settings(fake))
    assert model.filename == "big-Q4_K_M.gguf" and model.size == len(DATA)
    info = model.info
    assert (info["block_count"], info["head_count_kv"], info["key_length"]) == (16, 8, 64)
    assert info["context_length"] == 131072 and info["quantization"] == "Q4_K_M"
    assert info["tensor_count"] == len(TENSORS)
    assert model.quants == {"Q4_K_M": len(DATA), "Q8_0": 2 * len(DATA)}  # no split file, no README
    # The 2.4 MB header in blocks of 1, 2 and 4 MiB: a quarter of this file, a thousandth of a real one.
    assert model.bytes_read == 7 << 20 < len(DATA) / 3
    gets = fake.seen("GET", "big-Q4_K_M.gguf")
    assert gets and all(g.headers.get("range", "").startswith("bytes=") for g in gets)
    assert len(gets) == 3  # 1 MiB, then 2 MiB, then 4 MiB (cut at what the header needs)
    assert not fake.seen("GET", "big-Q8_0.gguf")  # other quants are sized from the listing


def test_named_quant_and_its_plan(fake: FakeHF) -> None:
    model = remote_header.read_remote("hf.co/acme/Big-GGUF:Q8_0", settings(fake))
    assert model.filename == "big-Q8_0.gguf" and model.quant == "Q8_0"
    assert model.pull_ref("Q4_K_M") == "hf.co/acme/Big-GGUF:Q4_K_M"
    figures = planner.ModelFigures("big", model.info, model.quants)
    # KV per token: 16 layers x 8 heads x (64 + 64) x 2 bytes, as memory.estimate counts it.
    p = planner.plan(figures, _roomy_machine(), num_ctx=1024)
    assert p.memory["kv_cache"] == 16 * 8 * 128 * 2 * 1024
    assert p.weights == 2 * len(DATA)


def _roomy_machine() -> planner.Machine:
    return planner.Machine("cpu", 4, 8, ("avx2",), 32 << 30, 30 << 30, 2 << 30, bandwidth_gbs=20.0)


def test_a_server_that_ignores_range_is_refused_before_the_weights(fake: FakeHF) -> None:
    fake.ignore_range = True
    with pytest.raises(PullError, match="does not serve the byte ranges"):
        remote_header.read_remote("hf.co/acme/Big-GGUF", settings(fake))


def test_offline_reads_nothing(fake: FakeHF) -> None:
    with pytest.raises(EgressRefused, match="offline"):
        remote_header.read_remote("hf.co/acme/Big-GGUF", settings(fake, offline=True))
    assert fake.seen() == []


def test_missing_quant_and_bad_reference(fake: FakeHF) -> None:
    with pytest.raises(ModelNotFound, match="has no Q2_K GGUF"):
        remote_header.read_remote("hf.co/acme/Big-GGUF:Q2_K", settings(fake))
    with pytest.raises(InvalidName):
        remote_header.read_remote("qwen2.5:7b", settings(fake))


def test_a_header_that_is_not_a_gguf_is_refused(fake: FakeHF) -> None:
    fake.add_file("acme", "Bad-GGUF", "bad-Q4_K_M.gguf", b"NOPE" + bytes(100))
    with pytest.raises(InvalidModelFile, match="GGUF"):
        remote_header.read_remote("hf.co/acme/Bad-GGUF", settings(fake))


def test_hostile_lengths_are_refused_without_fetching_them(fake: FakeHF) -> None:
    from gguf_writer import header, u64

    hostile = header(3, 0, 1) + u64(2**62) + b"k" * 64  # a key "2^62 bytes long"
    fake.add_file("acme", "Evil-GGUF", "evil-Q4_K_M.gguf", hostile + bytes(1 << 20))
    with pytest.raises(InvalidModelFile):
        remote_header.read_remote("hf.co/acme/Evil-GGUF", settings(fake))
    assert len(fake.seen("GET", "evil-Q4_K_M.gguf")) == 1  # one block, then the reader's checks


def test_a_header_past_the_cap_is_not_read_on(fake: FakeHF, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_header, "MAX_HEADER_BYTES", 2 << 20)  # below this header's 2.4 MB
    with pytest.raises(InvalidModelFile, match="header runs past 2 MiB"):
        remote_header.read_remote("hf.co/acme/Big-GGUF", settings(fake))
    ranges = [g.headers["range"] for g in fake.seen("GET", "big-Q4_K_M.gguf")]
    assert ranges == ["bytes=0-1048575", "bytes=1048576-2097151"]


def test_read_header_takes_a_header_without_its_weights_and_read_gguf_does_not(tmp_path: object) -> None:
    import io
    from pathlib import Path

    from cove.store import gguf

    head = DATA[: 3 << 20]  # the whole header, a fraction of the tensor data
    info = gguf.read_header(io.BytesIO(head), len(DATA))
    assert info.tensor_count == len(TENSORS) and info.file_size == len(DATA)
    assert info.summary()["block_count"] == 16
    cut = Path(str(tmp_path)) / "cut.gguf"
    cut.write_bytes(head)
    with pytest.raises(InvalidModelFile):
        gguf.read_gguf(cut)  # on disk, missing tensor data is a broken file


def test_the_listing_keeps_sizes_and_a_ranged_get_brings_only_the_range(fake: FakeHF) -> None:
    from cove.store.huggingface import HuggingFace, parse_hf_ref

    ref = parse_hf_ref("hf.co/acme/Big-GGUF")
    assert ref is not None
    with HuggingFace(fake.url) as hf:
        sizes = hf.file_sizes(ref)
        assert sizes["big-Q4_K_M.gguf"] == len(DATA) and sizes["README.md"] == len(b"# Big")
        url = f"{fake.url}/acme/Big-GGUF/resolve/main/big-Q4_K_M.gguf"
        response = hf.get_range(url, 4, 8)
        try:
            assert response.status_code == 206 and response.read() == DATA[4:8]
        finally:
            response.close()
    fake.no_tree = True
    with HuggingFace(fake.url) as hf:
        assert hf.file_sizes(ref) == {}
