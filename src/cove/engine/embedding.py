"""Embedding inputs fitted to the model's context (truncated, or refused), sent to the engine in
batches a client can leave between, and what an embed call yields."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, Cancelled

#: Tokens a tokenizer may add around any text (BOS, CLS, SEP, EOS); every other token takes a byte.
SPECIALS_ALLOWANCE = 4

#: Text (tokenized with the model's special tokens added) or token ids given by the caller.
EmbedInput = str | list[int]

#: How long one engine call of a batched embedding should take: a client that leaves is noticed
#: between calls, so its slot is free within about this long (plus one input's time).
BATCH_TARGET_S = 0.25
FIRST_BATCH = 8
MAX_BATCH = 256
#: llama.cpp's default batch, the least an embedder gets.
DEFAULT_BATCH = 512


def embedding_layout(num_ctx: int, num_parallel: int) -> tuple[int, int]:
    """(batch tokens, slots) of an embedder. The batch holds one whole input (llama.cpp refuses
    an input longer than its micro-batch) and no more: the inputs of one step attend over the
    whole step, masked, so a bigger one costs CPU for nothing. Measured with all-minilm (Q8_0)
    on 225-token chunks, one thread, load about 2 (texts per CPU-second): 512 with 1 slot 10.0
    to 11.1, with 8 slots (two inputs a step) 9.8 to 10.6, 2048 with 8 slots 9.9 to 10.6. The
    difference is small because flash attention skips what is masked (perf: 17% of the time
    with one input a step, 21% with two; the Q8_0 matrix products take 57 to 60%). The slots
    stay those the scheduler planned: short inputs (queries) share a step."""
    return max(num_ctx, DEFAULT_BATCH), max(1, num_parallel)


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, the tokens they took, and where the time went (seconds)."""

    vectors: list[list[float]]
    prompt_tokens: int
    load_duration_s: float
    total_duration_s: float
    truncated: int = 0  # how many inputs were cut to fit the context


@dataclass(frozen=True)
class Fitted:
    inputs: list[EmbedInput]
    truncated: int


def fit_to_context(
    inputs: Sequence[Any],
    limit: int,
    tokenize: Callable[[str], list[int]],
    specials: list[int],
    *,
    truncate: bool,
    model: str = "the model",
) -> Fitted:
    """Each input as it is when it fits in `limit` tokens, else cut to fit (or a BadRequest).

    `specials` is what `tokenize` gives for empty text: the tokens it adds around every input,
    which a cut keeps (a BERT input still ends with [SEP]). Caller token ids are cut as they are.
    Text is only tokenized when its length in bytes says it might not fit.
    """
    fitted: list[EmbedInput] = []
    cut = 0
    for index, item in enumerate(inputs):
        if isinstance(item, str) and len(item.encode()) + SPECIALS_ALLOWANCE <= limit:
            fitted.append(item)
            continue
        tokens = list(item) if isinstance(item, list) else tokenize(item)
        if len(tokens) <= limit:
            fitted.append(item)
            continue
        if not truncate:
            raise BadRequest(
                f"input {index} is too long: {len(tokens)} tokens, and {model} takes {limit}; "
                "shorten it, or leave truncate on to cut it to fit"
            )
        fitted.append(shorten(tokens, limit, specials if isinstance(item, str) else []))
        cut += 1
    return Fitted(fitted, cut)


def shorten(tokens: list[int], limit: int, specials: list[int]) -> list[int]:
    """The first tokens that fit, keeping the special tokens the tokenizer put at the end."""
    head = 0
    while head < len(specials) and head < len(tokens) and tokens[head] == specials[head]:
        head += 1
    tail = specials[head:]
    if tail and tokens[-len(tail) :] != tail:
        tail = []
    keep = max(limit - len(tail), 0)
    return tokens[:keep] + tail


def embed_in_batches(
    embed: Callable[[dict[str, Any]], dict[str, Any]],
    inputs: list[Any],
    *,
    truncate: bool = True,
    cancel: threading.Event | None = None,
    target_s: float = BATCH_TARGET_S,
    min_batch: int = 1,
) -> dict[str, Any]:
    """`embed` (a loaded model's) over `inputs` a batch at a time, as one engine answer.

    The engine's embedding call cannot be stopped half-way, so a big request is cut into
    batches sized to take about `target_s` each (measured as they go: a few short inputs per
    call for a slow model, up to MAX_BATCH for a quick one); a set `cancel` raises Cancelled
    before the next batch. The vectors, their indexes, the tokens and the cut inputs add up.

    `min_batch` is the engine's slot count: a batch is a whole number of them (fewer inputs
    than slots leave slots idle for the call; a part-filled last round of slots, the same).
    """
    items = [inputs] if _is_token_list(inputs) else list(inputs)
    data: list[dict[str, Any]] = []
    tokens = truncated = 0
    step = max(1, min_batch)
    size = _rounded(max(FIRST_BATCH, step), step)
    start = 0
    while start < len(items):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the client went away during the embedding")
        batch = items[start : start + size]
        began = time.perf_counter()
        result = embed({"input": batch, "truncate": truncate})
        took = time.perf_counter() - began
        data.extend({**item, "index": start + int(item["index"])} for item in result["data"])
        tokens += int((result.get("usage") or {}).get("prompt_tokens", 0))
        truncated += int(result.get("truncated") or 0)
        start += len(batch)
        size = _rounded(_next_size(size, took, target_s), step)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"data": data, "usage": usage, "truncated": truncated}


def _next_size(size: int, took: float, target_s: float) -> int:
    """The batch that should take `target_s`, at most twice the last one."""
    wanted = int(size * target_s / max(took, 1e-4))
    return max(1, min(wanted, 2 * size, MAX_BATCH))


def _rounded(size: int, step: int) -> int:
    """`size` to a whole number of `step`s: down, but never below one step."""
    return max(step, size // step * step)


def _is_token_list(value: Sequence[Any]) -> bool:
    return bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
