"""Speculative decoding settings for a load: n-gram (prompt lookup) drafts, and a draft model.

Prompt lookup drafts the next tokens by finding the last few tokens earlier in the context and
proposing what followed them there; the model checks a whole draft in one batch, so an answer
that quotes the prompt (a document, code being edited) is written several tokens per step. It
needs no second model. A draft model (recipe `DRAFT`, same vocabulary) guesses instead.
benchmarks/speculative.py measures both kinds of chat.
"""

from __future__ import annotations

from typing import Any

import xllamacpp

#: llama.cpp's n-gram drafters by cove's name for them.
NGRAM_KINDS = {
    "simple": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE,
    "map": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K,
    "mod": xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_MOD,
}
#: The drafter cove uses when a recipe turns prompt lookup on: on the repeat-and-edit chat of
#: benchmarks/speculative.py it gained 1.29x to 1.46x where "simple" gained 1.10x to 1.45x.
DEFAULT_KIND = "mod"
DRAFT_SIMPLE = xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE


def apply_speculative(
    params: Any, draft_ngram: int, draft_path: str | None = None, kind: str = DEFAULT_KIND
) -> None:
    """Turn on prompt lookup drafting up to `draft_ngram` tokens a step (0: off) and/or a draft
    model, on an `xllamacpp.CommonParams` about to load."""
    types = []
    if draft_path:
        types.append(DRAFT_SIMPLE)
        params.speculative.draft.mparams.path = draft_path
    if draft_ngram > 0:
        types.append(NGRAM_KINDS[kind])
    if not types:
        return
    params.speculative.types = types
    # n_max bounds every drafter's proposal; n_min 0 lets a short match still be tried.
    params.speculative.draft.n_max = max(draft_ngram, params.speculative.draft.n_max)
    params.speculative.draft.n_min = 0
    if draft_ngram > 0 and kind == "mod":
        params.speculative.ngram_mod.n_max = draft_ngram
        params.speculative.ngram_mod.n_min = min(params.speculative.ngram_mod.n_min, draft_ngram)
    elif draft_ngram > 0:
        # size_n: the tokens matched to find a place earlier in the context; size_m: drafted.
        lookup = params.speculative.ngram_simple if kind == "simple" else params.speculative.ngram_map_k
        lookup.size_m = draft_ngram
