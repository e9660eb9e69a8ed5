"""Will it fit? Weights, KV and prompt cache for a context, against the memory free right now;
and the memory bound an engine process runs under."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil

from ..errors import DoesNotFit

GIB = 1 << 30
MIB = 1 << 20
KV_BYTES = 2  # llama.cpp keeps the KV cache in f16 by default
OVERHEAD_BYTES = 150 << 20  # compute buffers and the runtime, measured roughly on small models
STACK_BYTES = 8 << 20  # a thread's stack as the C library reserves it (ulimit -s)
#: The most host RAM an engine may keep prompts in (see prompt_cache_mib).
PROMPT_CACHE_CAP = 2 * GIB


def default_threads() -> int:
    """Physical cores decode fastest; hyperthreads only add contention."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv_cache: int
    prompt_cache: int = 0
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.prompt_cache + self.overhead


def kv_bytes_per_token(info: dict[str, Any]) -> int:
    """K and V for every layer; unknown shapes count as a mid-size model, never as free."""
    layers = int(info.get("block_count") or 32)
    heads = int(info.get("head_count") or 32)
    kv_heads = int(info.get("head_count_kv") or heads)
    embedding = int(info.get("embedding_length") or 4096)
    key = int(info.get("key_length") or embedding // max(heads, 1))
    value = int(info.get("value_length") or key)
    return layers * kv_heads * (key + value) * KV_BYTES


def prompt_cache_mib(info: dict[str, Any], num_ctx: int, embedding: bool = False) -> int:
    """The host RAM (MiB) the engine may keep prompts in when they leave a slot, so a conversation
    that comes back skips its prompt. llama.cpp's default is 8 GiB whatever the model, outside
    any estimate; cove gives it one slot's full context of KV cache (up to PROMPT_CACHE_CAP):
    room for one long conversation or several short ones, and counted. An embedder keeps none."""
    if embedding:
        return 0
    wanted = min(kv_bytes_per_token(info) * num_ctx, PROMPT_CACHE_CAP)
    return max(1, -(-wanted // MIB))  # 0 would turn the cache off


def estimate(
    info: dict[str, Any], weights: int, num_ctx: int, parallel: int, *, embedding: bool = False
) -> Estimate:
    return Estimate(
        weights=weights,
        kv_cache=kv_bytes_per_token(info) * num_ctx * parallel,
        prompt_cache=prompt_cache_mib(info, num_ctx, embedding) * MIB,
    )


def process_limit(need: Estimate) -> int:
    """The writable memory an engine process may hold (RLIMIT_DATA) before its next allocation
    fails and it ends, alone: a runaway allocation (a render, a leak) costs that model's requests,
    never the machine. Twice the estimate (weights too: the CPU backend may repack them into
    its own memory) plus room for thread stacks, which count as data though barely touched."""
    threads = 4 * (os.cpu_count() or 1) + 32
    return 2 * need.total + GIB + threads * STACK_BYTES


def plan_parallel(
    name: str,
    info: dict[str, Any],
    weights: int,
    num_ctx: int,
    wanted: int,
    free: int,
    *,
    embedding: bool = False,
) -> int:
    """The most slots (up to `wanted`) that fit; DoesNotFit with a way out when even one does not."""
    for parallel in range(max(wanted, 1), 0, -1):
        if estimate(info, weights, num_ctx, parallel, embedding=embedding).total <= free:
            return parallel
    raise DoesNotFit(_advice(name, info, weights, num_ctx, free, embedding))


def _advice(name: str, info: dict[str, Any], weights: int, num_ctx: int, free: int, embedding: bool) -> str:
    need = estimate(info, weights, num_ctx, 1, embedding=embedding)
    text = (
        f"{name} needs {need.total / GIB:.1f} GiB (weights {weights / GIB:.1f} GiB + KV cache "
        f"{(need.kv_cache + need.prompt_cache) / GIB:.1f} GiB at num_ctx {num_ctx}) "
        f"but only {free / GIB:.1f} GiB is free"
    )
    room = free - weights - OVERHEAD_BYTES - MIB  # a MiB for the prompt cache's rounding up
    # One slot's KV cache, and as much again for the prompt cache (it is capped, so this is safe).
    per_token = kv_bytes_per_token(info) * (1 if embedding else 2)
    fits_ctx = room // per_token if room > 0 else 0
    if fits_ctx >= 256:
        return f"{text}; num_ctx {int(fits_ctx) // 256 * 256} would fit"
    return f"{text}; try a smaller quantization or a smaller model"
