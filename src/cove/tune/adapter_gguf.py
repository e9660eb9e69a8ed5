"""The trained LoRA as a GGUF adapter that llama.cpp loads onto the unchanged, quantized base.

llama.cpp's loader wants `general.type` "adapter", `adapter.type` "lora", `adapter.lora.alpha`,
the base's `general.architecture`, and for each adapted weight two tensors named after the
base's own tensor plus `.lora_a` (rank x in) and `.lora_b` (out x rank). It scales by
alpha / rank itself. HF module names map to GGUF tensor names through gguf's TensorNameMap.

One wrinkle: llama.cpp's converter reorders the rows of a llama model's q and k projections
(rotary halves interleaved), and transformers undoes that when it loads the GGUF. The LoRA
was trained in HF's order, so the rows of B for q and k are reordered back here, the same
way the converter does it for the base weights; A (the input side) is unaffected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CannotTrain

#: GGUF architectures whose q/k rows the converter permutes (and transformers un-permutes).
PERMUTED_ARCHITECTURES = ("llama",)
#: Where cove keeps how the adapter was made (data summary, settings, before/after), as JSON.
COVE_KEY = "cove.tune"


@dataclass(frozen=True)
class LoraPair:
    """One adapted weight: the HF module's name and its LoRA matrices as PEFT holds them."""

    module: str  # "model.layers.0.self_attn.q_proj"
    a: np.ndarray  # rank x in
    b: np.ndarray  # out x rank


@dataclass(frozen=True)
class BaseShape:
    """What the adapter must agree with about its base model."""

    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int


def tensor_name(base: BaseShape, module: str) -> str:
    """The base GGUF's tensor name for an HF module (`model.layers.3.self_attn.q_proj` is `blk.3.attn_q`)."""
    import gguf

    arch = _arch(base.architecture)
    mapped = gguf.get_tensor_name_map(arch, base.block_count).get_name(module)
    if mapped is None:
        raise CannotTrain(f"no {base.architecture} GGUF tensor matches the module {module!r}")
    return f"{mapped}.weight"


def _arch(name: str) -> Any:
    import gguf

    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch
    raise CannotTrain(f"the gguf package does not know the architecture {name!r}")


def permute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter order for q/k rows: within each head, the two rotary halves interleaved."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def gguf_pair(base: BaseShape, pair: LoraPair) -> tuple[str, np.ndarray, np.ndarray]:
    """The tensor name and (a, b) as the base GGUF's weight needs them."""
    name = tensor_name(base, pair.module)
    b = pair.b
    if base.architecture in PERMUTED_ARCHITECTURES:
        if name.endswith(".attn_q.weight"):
            b = permute_rows(b, base.head_count)
        elif name.endswith(".attn_k.weight"):
            b = permute_rows(b, base.head_count_kv)
    return name, np.ascontiguousarray(pair.a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)


def write_adapter(
    path: Path, base: BaseShape, alpha: float, pairs: list[LoraPair], about: dict[str, Any]
) -> int:
    """Write the adapter GGUF to `path`; returns the number of adapted weights."""
    import gguf

    if not pairs:
        raise CannotTrain("the trained adapter has no LoRA weights (no target module matched)")
    writer = gguf.GGUFWriter(str(path), base.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    writer.add_name("cove tune LoRA adapter")
    writer.add_string(COVE_KEY, json.dumps(about, sort_keys=True))
    for pair in sorted(pairs, key=lambda p: p.module):
        name, a, b = gguf_pair(base, pair)
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(pairs)
