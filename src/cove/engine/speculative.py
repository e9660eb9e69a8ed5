"""Speculative decoding settings for a load: n-gram (prompt lookup) drafts, and a draft model.

Prompt lookup drafts the next tokens by finding the last few tokens earlier in the context and
proposing what followed them there; the model checks a whole draft in one batch, so an answer
that quotes the prompt (a document, code being edited) is written several tokens per step. It
needs no second model. A draft model (recipe `DRAFT`, same vocabulary) guesses instead.
benchmarks/speculative.py measures both kinds of chat.

Speculation is a load setting, not a per-request one: llama.cpp's server in this engine
(xllamacpp 2026.10) copies a slot's speculative settings from the load and ignores the
`speculative.n_max` / `n_min` / `p_min` fields older servers read from a request body (its
parser has them commented out; the library holds no such key; a request with
`"speculative.n_max": 0` drafts as much as one without, checked here). So cove cannot turn it
on for a turn that quotes a document and off for a plain question. What it uses instead is a
drafter that decides for itself, step by step: "mod" drafts only when the last `n_match`
tokens occurred earlier in the context, and only when at least `n_min` tokens follow there; a
plain question's answer almost never repeats a run that long, so nothing is drafted and the
step costs what it did (a hash lookup), while an answer that quotes or edits the prompt is
drafted up to `n_max` tokens a step. See benchmarks/speculative.py for the figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xllamacpp

#: llama.cpp's n-gram drafters by cove's name for them.
NGRAM_KINDS = {
    "simple": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE,
    "map": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K,
    "mod": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MOD,
}
DRAFT_SIMPLE = xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE


@dataclass(frozen=True)
class Ngram:
    """How prompt lookup drafts: `kind` of drafter; `n_match` tokens that must recur to look up
    a continuation ("mod"; "simple" and "map" match `n_match` tokens too); a draft shorter than
    `n_min` is not tried ("mod")."""

    kind: str = "mod"
    n_match: int = 24
    n_min: int = 16


#: The drafter cove loads chat models with. benchmarks/speculative.py (gemma3:270m, per
#: CPU-second, the repeat-and-edit chat): "simple" drafted on the plain question too (6%
#: accepted, and its answer came out different once); "mod" with n_match 12 / n_min 8 drafted
#: more but less of it was right (84-91% accepted) for no gain; n_match 24 / n_min 16
#: drafted only runs that were then accepted (99-100%).
DEFAULT_NGRAM = Ngram()
#: The most tokens drafted a step (PARAMETER draft_ngram): 32 gained 1.35x to 1.40x on the
#: repeat-and-edit chat where 16 gained 1.22x to 1.30x, with the same acceptance.
DEFAULT_DRAFT_NGRAM = 32


def apply_speculative(
    params: Any, draft_ngram: int, draft_path: str | None = None, ngram: Ngram = DEFAULT_NGRAM
) -> None:
    """Turn on prompt lookup drafting up to `draft_ngram` tokens a step (0: off) and/or a draft
    model, on an `xllamacpp.CommonParams` about to load."""
    types = []
    if draft_path:
        types.append(DRAFT_SIMPLE)
        params.speculative.draft.mparams.path = draft_path
        # The draft's KV cache in the target's type: the memory plan counts it so.
        params.speculative.draft.cache_type_k = params.cache_type_k
        params.speculative.draft.cache_type_v = params.cache_type_v
    if draft_ngram > 0:
        types.append(NGRAM_KINDS[ngram.kind])
    if not types:
        return
    params.speculative.types = types
    # n_max bounds every drafter's proposal; n_min 0 lets a short match still be tried.
    params.speculative.draft.n_max = max(draft_ngram, params.speculative.draft.n_max)
    params.speculative.draft.n_min = 0
    if draft_ngram <= 0:
        return
    if ngram.kind == "mod":
        params.speculative.ngram_mod.n_max = draft_ngram
        params.speculative.ngram_mod.n_min = min(ngram.n_min, draft_ngram)
        params.speculative.ngram_mod.n_match = ngram.n_match
    else:
        # size_n: the tokens matched to find a place earlier in the context; size_m: drafted.
        lookup = params.speculative.ngram_simple if ngram.kind == "simple" else params.speculative.ngram_map_k
        lookup.size_n = ngram.n_match
        lookup.size_m = draft_ngram
