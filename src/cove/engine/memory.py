"""Will it fit? Weights plus KV cache for a context, against the memory free right now."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil

from ..errors import DoesNotFit

GIB = 1 << 30
KV_BYTES = 2  # llama.cpp keeps the KV cache in f16 by default
OVERHEAD_BYTES = 150 << 20  # compute buffers and the runtime, measured roughly on small models


def default_threads() -> int:
    """Physical cores decode fastest; hyperthreads only add contention."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv_cache: int
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


def kv_bytes_per_token(info: dict[str, Any]) -> int:
    """K and V for every layer; unknown shapes count as a mid-size model, never as free."""
    layers = int(info.get("block_count") or 32)
    heads = int(info.get("head_count") or 32)
    kv_heads = int(info.get("head_count_kv") or heads)
    embedding = int(info.get("embedding_length") or 4096)
    key = int(info.get("key_length") or embedding // max(heads, 1))
    value = int(info.get("value_length") or key)
    return layers * kv_heads * (key + value) * KV_BYTES


def estimate(info: dict[str, Any], weights: int, num_ctx: int, parallel: int) -> Estimate:
    return Estimate(weights=weights, kv_cache=kv_bytes_per_token(info) * num_ctx * parallel)


def plan_parallel(name: str, info: dict[str, Any], weights: int, num_ctx: int, wanted: int, free: int) -> int:
    """The most slots (up to `wanted`) that fit; DoesNotFit with a way out when even one does not."""
    for parallel in range(max(wanted, 1), 0, -1):
        if estimate(info, weights, num_ctx, parallel).total <= free:
            return parallel
    raise DoesNotFit(_advice(name, info, weights, num_ctx, free))


def _advice(name: str, info: dict[str, Any], weights: int, num_ctx: int, free: int) -> str:
    need = estimate(info, weights, num_ctx, 1)
    text = (
        f"{name} needs {need.total / GIB:.1f} GiB (weights {weights / GIB:.1f} GiB + KV cache "
        f"{need.kv_cache / GIB:.1f} GiB at num_ctx {num_ctx}) but only {free / GIB:.1f} GiB is free"
    )
    room = free - weights - OVERHEAD_BYTES
    fits_ctx = room // kv_bytes_per_token(info) if room > 0 else 0
    if fits_ctx >= 256:
        return f"{text}; num_ctx {int(fits_ctx) // 256 * 256} would fit"
    return f"{text}; try a smaller quantization or a smaller model"
