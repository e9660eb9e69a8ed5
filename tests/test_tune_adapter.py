"""The GGUF LoRA adapter's names, layout and metadata, checkpoints and resuming, on a tiny random model."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cove.errors import DiskFull
from cove.store.models import validate_gguf
from cove.tune import adapter_gguf
from cove.tune.adapter_gguf import BaseShape, LoraPair, permute_rows, tensor_name, write_adapter
from cove.tune.checkpoint import Checkpoints, fingerprint
from cove.tune.data import Example
from cove.tune.errors import CannotTrain, TuneError
from cove.tune.plan import TuneSettings

SMOL = BaseShape(architecture="llama", block_count=30, head_count=9, head_count_kv=3)


def test_hf_module_names_map_to_the_base_gguf_tensor_names() -> None:
    assert tensor_name(SMOL, "model.layers.0.self_attn.q_proj") == "blk.0.attn_q.weight"
    assert tensor_name(SMOL, "model.layers.29.self_attn.v_proj") == "blk.29.attn_v.weight"
    assert tensor_name(SMOL, "model.layers.3.mlp.down_proj") == "blk.3.ffn_down.weight"
    gemma = BaseShape(architecture="gemma3", block_count=18, head_count=4, head_count_kv=1)
    assert tensor_name(gemma, "model.layers.17.self_attn.o_proj") == "blk.17.attn_output.weight"
    with pytest.raises(CannotTrain, match="no llama GGUF tensor matches"):
        tensor_name(SMOL, "model.layers.0.something_else")
    with pytest.raises(CannotTrain, match="does not know the architecture 'nope'"):
        tensor_name(BaseShape("nope", 1, 1, 1), "model.layers.0.self_attn.q_proj")


def test_q_rows_are_put_back_in_the_order_llama_cpp_stores_them() -> None:
    """transformers un-permutes q/k when it loads a llama GGUF; the adapter's B must be permuted back."""
    transformers_gguf = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    rows = np.arange(9 * 64 * 2, dtype=np.float32).reshape(9 * 64, 2)
    as_loaded = transformers_gguf.LlamaTensorProcessor()._reverse_permute_weights(rows, 9, 9)
    assert np.array_equal(permute_rows(as_loaded, 9), rows)
    k = np.arange(3 * 64 * 2, dtype=np.float32).reshape(3 * 64, 2)
    as_loaded_k = transformers_gguf.LlamaTensorProcessor()._reverse_permute_weights(k, 9, 3)
    assert np.array_equal(permute_rows(as_loaded_k, 3), k)


def test_only_llama_q_and_k_are_permuted() -> None:
    a = np.ones((8, 576), dtype=np.float32)
    b = np.arange(576 * 8, dtype=np.float32).reshape(576, 8)
    _, _, q = adapter_gguf.gguf_pair(SMOL, LoraPair("model.layers.0.self_attn.q_proj", a, b))
    _, _, v = adapter_gguf.gguf_pair(SMOL, LoraPair("model.layers.0.self_attn.v_proj", a, b))
    gemma = BaseShape(architecture="gemma3", block_count=18, head_count=4, head_count_kv=1)
    _, _, gemma_q = adapter_gguf.gguf_pair(gemma, LoraPair("model.layers.0.self_attn.q_proj", a, b))
    assert not np.array_equal(q, b) and np.array_equal(np.sort(q, axis=None), np.sort(b, axis=None))
    assert np.array_equal(v, b)
    assert np.array_equal(gemma_q, b)  # gemma's converter leaves q and k as they are


def test_the_adapter_has_what_llama_cpps_lora_loader_reads(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    rank, width = 4, 16
    pairs = [
        LoraPair(
            f"model.layers.{i}.self_attn.{m}",
            np.full((rank, width), i, np.float32),
            np.ones((width, rank), np.float32),
        )
        for i in range(2)
        for m in ("q_proj", "v_proj")
    ]
    path = tmp_path / "adapter.gguf"
    shape = BaseShape(architecture="llama", block_count=2, head_count=2, head_count_kv=2)
    assert write_adapter(path, shape, 16.0, pairs, {"base": "tiny"}) == 4
    reader = gguf.GGUFReader(path)

    def field(key: str) -> Any:
        return reader.fields[key].contents()

    assert field("general.architecture") == "llama"
    assert field("general.type") == "adapter"
    assert field("adapter.type") == "lora"
    assert field("adapter.lora.alpha") == 16.0
    assert json.loads(field("cove.tune")) == {"base": "tiny"}
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == sorted(
        f"blk.{i}.attn_{m}.weight.lora_{side}" for i in range(2) for m in ("q", "v") for side in ("a", "b")
    )
    # ggml's order is the reverse of numpy's: a is ne [in, rank], b is ne [rank, out].
    assert list(tensors["blk.1.attn_v.weight.lora_a"].shape) == [width, rank]
    assert list(tensors["blk.1.attn_v.weight.lora_b"].shape) == [rank, width]
    assert tensors["blk.1.attn_v.weight.lora_a"].tensor_type == gguf.GGMLQuantizationType.F32
    validate_gguf(path)  # the store takes it as the blob a recipe's ADAPTER points at


def test_an_adapter_with_no_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CannotTrain, match="no LoRA weights"):
        write_adapter(tmp_path / "a.gguf", SMOL, 16.0, [], {})


# -- checkpoints ---------------------------------------------------------------------------------

EXAMPLES = [Example(origin="1", text="hello")]


def test_a_fingerprint_changes_with_data_and_settings_but_not_with_how_often_to_save() -> None:
    settings = TuneSettings().to_dict()
    same = fingerprint("d", settings, EXAMPLES)
    assert fingerprint("d", {**settings, "checkpoint_every": 99}, EXAMPLES) == same
    assert fingerprint("d", {**settings, "lr": 0.5}, EXAMPLES) != same
    assert fingerprint("e", settings, EXAMPLES) != same
    assert fingerprint("d", settings, [Example(origin="1", text="bye")]) != same


def test_a_checkpoint_of_another_run_is_not_resumed_silently(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    Checkpoints(tmp_path, "run-a").save({"step": 4})
    assert Checkpoints(tmp_path, "run-a").load(restart=False) == {"step": 4, "run": "run-a"}
    with pytest.raises(TuneError, match=r"different run .* at step 4: .* --restart"):
        Checkpoints(tmp_path, "run-b").load(restart=False)
    assert Checkpoints(tmp_path, "run-b").load(restart=True) is None
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_damaged_checkpoint_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TuneError, match=r"cannot be read .* --restart"):
        Checkpoints(tmp_path, "run").load(restart=False)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    saved = Checkpoints(tmp_path, "run")
    saved.save({"step": 2})

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull, match=r"disk full while writing checkpoint\.pt"):
        saved.save({"step": 3})
    monkeypatch.undo()
    assert saved.load(restart=False) == {"step": 2, "run": "run"}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
