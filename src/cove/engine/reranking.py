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
