"""What a rerank call takes and gives: the checks on its inputs, and the scores, best first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest

#: The most documents one rerank call scores: a knowledge-base search reranks a few dozen.
MAX_DOCUMENTS = 1000


@dataclass(frozen=True)
class Ranked:
    """One document's place: its index in the request and the reranker's score (higher: better)."""

    index: int
    score: float


@dataclass(frozen=True)
class Reranked:
    """The documents scored, best first (only the `top_n` best when asked), and where time went."""

    results: list[Ranked]
    prompt_tokens: int = 0
    load_duration_s: float = 0.0
    total_duration_s: float = 0.0
    truncated: int = 0  # how many documents were cut to fit the context with the query

    def scores(self) -> list[float]:
        """Every document's score in the request's order (a reranked list given whole)."""
        by_index = {r.index: r.score for r in self.results}
        return [by_index[i] for i in range(len(by_index))]


def checked_inputs(query: Any, documents: Any, top_n: Any) -> tuple[str, list[str], int | None]:
    """The query, documents and top_n of a rerank request, or a BadRequest saying what is wrong."""
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("query must be a non-empty string")
    if not isinstance(documents, list) or not documents:
        raise BadRequest("documents must be a non-empty list of strings")
    texts = [_text(d, i) for i, d in enumerate(documents)]
    if len(texts) > MAX_DOCUMENTS:
        raise BadRequest(f"too many documents: {len(texts)}; at most {MAX_DOCUMENTS} a request")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise BadRequest("top_n must be a whole number of at least 1")
    return query, texts, top_n


def _text(document: Any, index: int) -> str:
    """A document is a string, or (Cohere's and Jina's older shape) an object with `text`."""
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        document = document["text"]
    if not isinstance(document, str):
        raise BadRequest(f"documents[{index}] must be a string (or an object with a text field)")
    if not document.strip():
        raise BadRequest(f"documents[{index}] is empty")
    return document


def ranked_of(result: dict[str, Any], count: int) -> list[Ranked]:
    """The engine's `results` as Ranked, best first; an answer that is not one is an error."""
    from ..errors import EngineError

    try:
        ranked = [Ranked(int(r["index"]), float(r["relevance_score"])) for r in result["results"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"the engine's rerank answer is not a list of scores: {exc}") from exc
    if any(not 0 <= r.index < count for r in ranked):
        raise EngineError("the engine's rerank answer names a document that was not sent")
    return sorted(ranked, key=lambda r: (-r.score, r.index))


# -- a BERT cross-encoder's second segment ----------------------------------------------------------
#
# A BERT cross-encoder reads `[CLS] query [SEP] document [SEP]` with the document's tokens (and the
# last [SEP]) as token type 1, but llama.cpp gives every token type 0. So cove's conversion gives
# the vocabulary a second copy, whose embeddings already hold type 1 (word + type 1 - type 0),
# named `<|bN|>` (N: the token's id) as control tokens that no text tokenizes into, and a rerank
# template `[CLS]{query}[SEP]{document}`; cove then writes each document as its copies' names,
# which the engine's rerank call (parsing special tokens in the template) reads back as those ids.

#: The GGUF key holding the id of the first segment-B copy (the vocabulary's size before it).
SEGMENT_B_KEY = "cove.rerank.segment_b"


def segment_b_piece(token_id: int) -> str:
    """The name of the segment-B copy of token `token_id` (its id in the first segment):
    `<|b` digits `|>` never overlap."""
    return f"<|b{token_id}|>"


def rerank_template(cls: str, sep: str) -> str:
    return f"{cls}{{query}}{sep}{{document}}"


def as_segment_b(tokens: list[int], sep: int) -> str:
    """A document's tokens, and the [SEP] that ends the pair, as their segment-B copies' names."""
    return "".join(segment_b_piece(t) for t in [*tokens, sep])


def plain_query(query: str) -> str:
    """The query as the template may hold it: no `{document}` for the engine to fill in and no
    copy's name to read as one. WordPiece splits punctuation off, so the tokens are the same."""
    return query.replace("{", "{ ").replace("<|", "< |")
