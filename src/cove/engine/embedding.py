"""Embedding inputs fitted to the model's context (truncated, or refused), and what an embed call yields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest

#: Tokens a tokenizer may add around any text (BOS, CLS, SEP, EOS); every other token takes a byte.
SPECIALS_ALLOWANCE = 4

#: Text (tokenized with the model's special tokens added) or token ids given by the caller.
EmbedInput = str | list[int]


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
