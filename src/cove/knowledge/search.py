"""Finding passages: BM25 (FTS5) and vector (sqlite-vec) rankings fused by reciprocal rank
fusion, optionally reranked, and a measured threshold for "nothing relevant was found"."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from ..errors import BadRequest, CoveError
from .documents import Passage
from .embedder import Embedder
from .index import Collection, KnowledgeIndex

Mode = Literal["hybrid", "bm25", "vector"]
MODES: tuple[Mode, ...] = ("hybrid", "bm25", "vector")
#: Reciprocal rank fusion: a hit scores the sum over rankings of weight / (RRF_K + rank). Cormack
#: et al. use 60; on the debian-faq benchmark a smaller constant (the top ranks count for more) and
#: BM25 at half the vectors' weight did best, and every k from 5 to 20 with a BM25 weight from 0.5
#: to 0.7 beat both rankings alone on recall@5 and MRR@10 (benchmarks/kb_retrieval.py).
RRF_K = 10
BM25_WEIGHT = 0.5
#: How many candidates sqlite-vec's scan of the vectors' signs picks for exact ranking, at
#: least, per result wanted (see KnowledgeIndex.knn); a collection this small is ranked whole.
#: (sqlite-vec's scan costs more the more it keeps: at 10,000 chunks 9 ms for 100, 86 for 1,000.)
CANDIDATES = 200
CANDIDATES_PER_RESULT = 4
#: How many hits each ranking contributes to the fusion, at least.
DEPTH = 50
MAX_TERMS = 64
#: BM25 scores every chunk that holds any of the question's words, so its time grows with how
#: many that is: at 100,000 chunks a question with words in most of them took 100 to 400 ms
#: (busy machine). The rarest words are kept while the chunks they are in add up to at most
#: this many (the rarest always); the rest, the commonest, weigh least in BM25 anyway.
POSTINGS = 10_000
#: The lowest cosine similarity, per embedding model, of a passage worth giving the model. For
#: all-minilm, measured by benchmarks/kb_retrieval.py: the best of a question's top 5 passages
#: is at least 0.28 for 111 of the debian-faq's 112 questions (the one below: 0.217), and below
#: it for all of 30 questions the FAQ cannot answer (their highest: 0.271): the cut that sorts
#: the most of both rightly. At 0.20 every answerable question passes but 27% of the others do.
RELEVANCE: dict[str, float] = {"all-minilm": 0.28}

Reranker = Callable[[str, list[str]], list[float]]
_BM25 = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cove-kb-bm25")
_WORD = re.compile(r"\w+", re.UNICODE)


#: Words a question is made of that say nothing about what it asks (English): left out of the
#: BM25 query, unless the question is nothing else.
_STOPWORDS = """a an and are as at be but by can could did do does for from had has have how i if in into
is it its me my of on or our should so than that the their them there these they this to was we
were what when where which who whom why will with would you your"""
STOPWORDS = frozenset(_STOPWORDS.split())


def query_words(query: str) -> list[str]:
    """The question's words for BM25: its stopwords left out unless it is nothing else."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    return ([w for w in words if w not in STOPWORDS] or words)[:MAX_TERMS]


def fts_query(query: str) -> str | None:
    """The question's words, each quoted (FTS5 syntax in a question is text, not operators)."""
    words = query_words(query)
    return " OR ".join(f'"{w}"' for w in words) if words else None


def pruned(frequencies: dict[str, int], total: int, budget: int = POSTINGS) -> list[str]:
    """The words BM25 ranks by, rarest first, from how many of the `total` chunks each is in.
    A word in none is left out (it matches nothing), and so is one in half the chunks or more
    unless every word is: FTS5's BM25 gives such a word a weight of almost nothing (1e-6), so
    it only makes chunks match. Then the rarest words while their chunks add up to `budget`,
    and always the rarest one."""
    present = sorted((n, w) for w, n in frequencies.items() if n > 0)
    words = [(n, w) for n, w in present if 2 * n < total] or present
    kept: list[str] = []
    spent = 0
    for n, word in words:
        if kept and spent + n > budget:
            break
        kept.append(word)
        spent += n
    return kept


def lexical(index: KnowledgeIndex, col: Collection, words: list[str], depth: int) -> list[tuple[int, float]]:
    """The BM25 ranking of the question's words, its work bounded (see `pruned`)."""
    total, frequencies = index.frequencies(col, words)
    return index.bm25(col, pruned(frequencies, total, POSTINGS), depth)


def rrf(
    rankings: Sequence[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: each id scores the sum of weight/(k + rank) over the lists it is in."""
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def search(
    index: KnowledgeIndex,
    embedder_of: Callable[[Collection], Embedder],
    names: Sequence[str],
    query: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    reranker: Reranker | None = None,
) -> list[Passage]:
    """The k best passages for `query` across the named collections, best first."""
    if mode not in MODES:
        raise BadRequest(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    if not 1 <= k <= 100:
        raise BadRequest("k must be between 1 and 100")
    if not query.strip():
        raise BadRequest("the search query is empty")
    depth = max(DEPTH, 4 * k)
    rankings: list[list[int]] = []
    weights: list[float] = []
    scores: dict[int, float] = {}
    similarity: dict[int, float] = {}
    for name in dict.fromkeys(names):
        col = index.collection(name)
        words = query_words(query) if mode != "vector" else []
        # BM25 on its own connection and thread while this one embeds the question and ranks
        # vectors: the engine, SQLite and numpy all let go of the GIL, so the halves overlap.
        bm25 = _BM25.submit(lexical, index, col, words, depth) if words else None
        vector = embedder_of(col).embed([query])[0] if mode != "bm25" or col.dimensions else None
        near = (
            index.knn(col, vector, depth, max(CANDIDATES, CANDIDATES_PER_RESULT * depth))
            if vector is not None and mode != "bm25"
            else []
        )
        if mode != "vector":
            hits = bm25.result() if bm25 is not None else []
            rankings.append([i for i, _ in hits])
            weights.append(BM25_WEIGHT)
            if mode == "bm25":
                scores.update(hits)
        if vector is not None:
            similarity.update(near)
            if mode != "bm25":
                rankings.append([i for i, _ in near])
                weights.append(1.0)
            if mode == "vector":
                scores.update(near)
            lexical_only = [i for r in rankings for i in r if i not in similarity]
            similarity.update(index.similarities(col, vector, lexical_only))
    ranked = (
        rrf(rankings, weights=weights) if mode == "hybrid" else sorted(scores.items(), key=lambda kv: -kv[1])
    )
    if reranker is not None:
        ranked = _reranked(index, reranker, query, ranked[: max(4 * k, 20)])
    return _passages(index, ranked[:k], similarity)


def _reranked(
    index: KnowledgeIndex, reranker: Reranker, query: str, ranked: list[tuple[int, float]]
) -> list[tuple[int, float]]:
    """The fused candidates in the reranker's order, each scored by it; when the reranker fails
    (its engine, its model), the fused order as it was: a search is never lost to its reranker,
    which keeps what went wrong for the caller to say."""
    rows = index.chunk_rows([i for i, _ in ranked])
    ids = [i for i, _ in ranked if i in rows]
    try:
        scores = reranker(query, [rows[i][0] for i in ids])
    except CoveError:
        return ranked
    return sorted(zip(ids, scores, strict=True), key=lambda kv: (-kv[1], kv[0]))


def _passages(
    index: KnowledgeIndex, ranked: list[tuple[int, float]], similarity: dict[int, float]
) -> list[Passage]:
    rows = index.chunk_rows([i for i, _ in ranked])
    found = []
    for chunk_id, score in ranked:
        if chunk_id not in rows:
            continue  # deleted between the ranking and now
        text, page, heading, start, end, file, collection = rows[chunk_id]
        found.append(
            Passage(
                chunk_id=chunk_id,
                collection=collection,
                file=file,
                text=text,
                score=round(score, 6),
                page=page,
                heading=tuple(json.loads(heading)),
                start=start,
                end=end,
                similarity=similarity.get(chunk_id),
            )
        )
    return found


def threshold(model: str) -> float | None:
    """The measured relevance threshold of an embedding model, if it has been measured."""
    return RELEVANCE.get(model.split(":")[0].removesuffix(":latest"))


def relevant(passages: Sequence[Passage], model: str = "all-minilm") -> list[Passage]:
    """The passages close enough to the question to be worth giving a model; an empty answer
    means "the documents say nothing about this" (a chat turn says so instead of guessing)."""
    limit = threshold(model)
    if limit is None:
        return list(passages)
    return [p for p in passages if p.similarity is not None and p.similarity >= limit]
