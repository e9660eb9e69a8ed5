"""Will it fit? Weights, KV and prompt cache for a context, against the memory free right now;
and the memory bound an engine process runs under."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from ..errors import DoesNotFit

GIB = 1 << 30
MIB = 1 << 20
#: Bytes a KV-cache element takes, by type: f16 (llama.cpp's default) and q8_0 (a block of 32
#: elements is 32 bytes and an f16 scale).
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32}
KV_TYPES = tuple(KV_TYPE_BYTES)
KV_BYTES = 2  # f16
#: Compute buffers and the runtime: a base and a share of the weights (the buffers grow with
#: the model's width). Measured on this machine's store as peak RSS less weights and KV cache:
#: about 99 MiB for smollm2:135m (98 MB of weights) and gemma3:270m (253 MB), see `cove fit --check`.
OVERHEAD_BYTES = 90 << 20
OVERHEAD_SHARE = 0.05
STACK_BYTES = 8 << 20  # a thread's stack as the C library reserves it (ulimit -s)
#: The most host RAM an engine may keep prompts in (see prompt_cache_mib).
PROMPT_CACHE_CAP = 2 * GIB
#: Prompt lookup (engine/speculative.py) outside llama.cpp's buffers: its drafter's table at
#: load, and the logits of a whole draft (n_max + 1 tokens, 4 bytes each per vocabulary entry)
#: once one is checked. Measured here with n_max 32: peak RSS grew by 52 MB for gemma3:270m
#: (262k tokens: 17.4 MB + 34.6 MB) and 25 MB for smollm2:135m (49k tokens: 18.5 MB + 6.5 MB).
NGRAM_TABLE_BYTES = 18_000_000
#: A vocabulary of unknown size counts as a large one's (gemma3's).
LARGE_VOCABULARY = 262_144


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
        """With the prompt cache full: what the engine may come to hold."""
        return self.weights + self.kv_cache + self.prompt_cache + self.overhead

    @property
    def at_load(self) -> int:
        """What it holds once loaded: the prompt cache fills only as conversations leave slots."""
        return self.total - self.prompt_cache


def overhead_bytes(weights: int) -> int:
    return OVERHEAD_BYTES + int(weights * OVERHEAD_SHARE)


def drafting_bytes(draft_ngram: int, vocabulary: int | None = None) -> int:
    """What prompt lookup drafting up to `draft_ngram` tokens a step (0: off) holds."""
    if draft_ngram <= 0:
        return 0
    return NGRAM_TABLE_BYTES + 4 * (vocabulary or LARGE_VOCABULARY) * (draft_ngram + 1)


def kv_bytes_per_token(info: dict[str, Any], kv_type: str = "f16") -> int:
    """K and V for every layer, in `kv_type`; unknown shapes count as a mid-size model, never
    as free."""
    layers = int(info.get("block_count") or 32)
    heads = int(info.get("head_count") or 32)
    kv_heads = int(info.get("head_count_kv") or heads)
    embedding = int(info.get("embedding_length") or 4096)
    key = int(info.get("key_length") or embedding // max(heads, 1))
    value = int(info.get("value_length") or key)
    # A draft model (recipe DRAFT, its summary under "draft") keeps a KV cache of its own, as
    # long as its target's and of the same type.
    draft = info.get("draft")
    drafts = kv_bytes_per_token(draft, kv_type) if isinstance(draft, dict) else 0
    return int(layers * kv_heads * (key + value) * KV_TYPE_BYTES[kv_type]) + drafts


def kv_cache_type(recipe_parameters: dict[str, Any], options: dict[str, Any]) -> str | None:
    """The KV-cache type a load asks for (LoadSpec.kv_type): the request's checked option, else
    the recipe's `PARAMETER kv_cache_type`; None lets the scheduler choose."""
    asked = options.get("kv_cache_type") or recipe_parameters.get("kv_cache_type")
    return str(asked) if asked else None


def prompt_cache_mib(
    info: dict[str, Any], num_ctx: int, embedding: bool = False, kv_type: str = "f16"
) -> int:
    """The host RAM (MiB) the engine may keep prompts in when they leave a slot, so a conversation
    that comes back skips its prompt. llama.cpp's default is 8 GiB whatever the model, outside
    any estimate; cove gives it one slot's full context of KV cache (up to PROMPT_CACHE_CAP):
    room for one long conversation or several short ones, and counted. An embedder keeps none."""
    if embedding:
        return 0
    wanted = min(kv_bytes_per_token(info, kv_type) * num_ctx, PROMPT_CACHE_CAP)
    return max(1, -(-wanted // MIB))  # 0 would turn the cache off


def estimate(
    info: dict[str, Any],
    weights: int,
    num_ctx: int,
    parallel: int,
    *,
    embedding: bool = False,
    kv_type: str = "f16",
    draft_ngram: int = 0,
) -> Estimate:
    """`draft_ngram`: the load's prompt lookup (an embedder drafts nothing)."""
    drafting = 0 if embedding else drafting_bytes(draft_ngram, info.get("vocab_size"))
    return Estimate(
        weights=weights,
        kv_cache=kv_bytes_per_token(info, kv_type) * num_ctx * parallel,
        prompt_cache=prompt_cache_mib(info, num_ctx, embedding, kv_type) * MIB,
        overhead=overhead_bytes(weights) + drafting,
    )


def process_limit(need: Estimate) -> int:
    """The writable memory an engine process may hold (RLIMIT_DATA) before its next allocation
    fails and it ends, alone: a runaway allocation (a render, a leak) costs that model's requests,
    never the machine. Twice the estimate (weights too: the CPU backend may repack them into
    its own memory) plus room for thread stacks, which count as data though barely touched."""
    threads = 4 * (os.cpu_count() or 1) + 32
    return 2 * need.total + GIB + threads * STACK_BYTES


def plan_load(
    name: str,
    info: dict[str, Any],
    weights: int,
    num_ctx: int,
    wanted: int,
    free: int,
    *,
    embedding: bool = False,
    kv_type: str | None = None,
    kv_types: tuple[str, ...] = KV_TYPES,
    draft_ngram: int = 0,
    need: Callable[[int, str], Estimate] | None = None,
) -> tuple[int, str]:
    """(slots, KV-cache type) that fit in `free`: the most slots (up to `wanted`) in f16, then in
    q8_0 (half the KV memory, a little quality) unless the caller named a type; DoesNotFit with
    a way out when even one slot does not. `kv_types`: the levers the engine honours.
    `need(slots, kv_type)`: what a load takes (llama.cpp's fit); default cove's estimate."""

    def estimated(parallel: int, kind: str) -> Estimate:
        return estimate(
            info, weights, num_ctx, parallel, embedding=embedding, kv_type=kind, draft_ngram=draft_ngram
        )

    sizer = need or estimated
    for kind in [kv_type] if kv_type else list(kv_types):
        for parallel in range(max(wanted, 1), 0, -1):
            if sizer(parallel, kind).total <= free:
                return parallel, kind
    kind = kv_type or kv_types[-1]
    raise DoesNotFit(_advice(name, info, num_ctx, free, embedding, kind, sizer(1, kind)))


def _advice(
    name: str,
    info: dict[str, Any],
    num_ctx: int,
    free: int,
    embedding: bool,
    kv_type: str,
    need: Estimate,
) -> str:
    """Why it does not fit (`need`: one slot's load) and the largest context that would."""
    weights = need.weights
    kind = "" if kv_type == "f16" else f" in {kv_type}"
    text = (
        f"{name} needs {need.total / GIB:.1f} GiB (weights {weights / GIB:.1f} GiB + KV cache{kind} "
        f"{(need.kv_cache + need.prompt_cache) / GIB:.1f} GiB at num_ctx {num_ctx}) "
        f"but only {free / GIB:.1f} GiB is free"
    )
    room = free - weights - need.overhead - MIB  # a MiB for the prompt cache's rounding up
    # One slot's KV cache, and as much again for the prompt cache (it is capped, so this is safe).
    per_token = kv_bytes_per_token(info, kv_type) * (1 if embedding else 2)
    fits_ctx = room // per_token if room > 0 else 0
    if fits_ctx >= 256:
        return f"{text}; num_ctx {int(fits_ctx) // 256 * 256} would fit"
    return f"{text}; try a smaller quantization or a smaller model"
