"""Query latency of the knowledge base: p50/p95 of a hybrid search, the query's embedding by
all-minilm in cove's engine included, at 10,000 and 100,000 chunks.

The chunks are synthetic, said plainly: texts of words drawn from Debian's FAQ (package `debian-
faq`, installed when missing), and vectors shaped like real ones: real all-minilm vectors of
FAQ-like sentences, mixed and perturbed and normalised (clustered as real embeddings are, not
uniform noise). They are written straight into the index (no embedding at ingest), so only the
search is timed. The vector search (candidates from a scan of the vectors' signs held in memory,
ranked by exact cosine) is compared with exact nearest neighbours (numpy over every vector) to
give its recall@10. A warm-up search first loads the model and the collection's signs; BM25 is
bounded by `cove.knowledge.search.POSTINGS`, and word counts are kept between searches until a
write.

    .venv/bin/python benchmarks/kb_latency.py [--sizes 10000,100000] [--queries 100] [--home DIR]
        [--keep DIR]

`--keep DIR` keeps the indexes it writes there and searches them again on the next run with the
same sizes (writing 100,000 chunks takes minutes on a busy machine); the texts and vectors of
each size come from that size's own seed, so a kept index is the one a fresh run would write.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import debian_faq

from cove.config import Settings
from cove.knowledge import search
from cove.knowledge.documents import Chunk
from cove.knowledge.errors import CollectionNotFound
from cove.knowledge.index import Indexed
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove

PER_DOCUMENT = 100
QUERIES = [
    "how do I upgrade to a new release",
    "where can I download the installation images",
    "what is a source package",
    "how do I report a bug",
    "which architectures are supported",
    "how do I keep my system up to date",
    "what does the non-free section contain",
    "how are configuration files handled on upgrade",
    "can I use debian packages on another distribution",
    "how do I become a developer",
]


def vocabulary() -> list[str]:
    text = debian_faq()
    return [w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)]


def zipf_vocabulary(words: list[str], size: int = 50_000, seed: int = 11) -> list[str]:
    """A corpus-sized vocabulary: the FAQ's distinct words, most frequent first, then made-up
    ones, drawn by Zipf's law (rank r with weight 1/r), as words are in a large real corpus.
    Texts drawn from the FAQ's own 5,000 words alone are far denser than that: there a query's
    words occur in 30 to 96% of 100,000 chunks, and BM25 must score every one."""
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts, key=lambda w: -counts[w])
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(ranked) < size:
        ranked.append("".join(rng.choices(letters, k=rng.randint(5, 10))))
    weights = [1 / (r + 1) for r in range(len(ranked))]
    return rng.choices(ranked, weights=weights, k=2_000_000)


def base_vectors(cove: Cove, words: list[str], rng: random.Random, count: int = 256) -> np.ndarray:
    sentences = [" ".join(rng.choices(words, k=24)) for _ in range(count - len(QUERIES))] + QUERIES
    vectors = np.array(cove.embed("all-minilm", sentences).vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Each vector: a mix of two real vectors plus noise at a tenth of their scale, normalised."""
    rng = np.random.default_rng(seed)
    a = base[rng.integers(0, len(base), n)]
    b = base[rng.integers(0, len(base), n)]
    w = rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32)
    mixed = (
        w * a
        + (1 - w) * b
        + rng.normal(0, 0.1 / np.sqrt(base.shape[1]), (n, base.shape[1])).astype(np.float32)
    )
    result: np.ndarray = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return result


def fill(kb: KnowledgeBase, vectors: np.ndarray, words: list[str], rng: random.Random) -> None:
    col = kb.index.collection("bench")
    for start in range(0, len(vectors), PER_DOCUMENT):
        block = vectors[start : start + PER_DOCUMENT]
        texts = [" ".join(rng.choices(words, k=rng.randint(60, 180))) for _ in block]
        chunks = [Chunk(t, 0, len(t), len(t.split())) for t in texts]
        doc = Indexed(
            f"/synthetic/{start}.txt", f"{start}.txt", str(start), 0, 0, chunks=chunks, vectors=block.tolist()
        )
        kb.index.write_document(col, doc)


def knn_recall(kb: KnowledgeBase, vectors: np.ndarray, queries: np.ndarray) -> float:
    """Share of the exact 10 nearest found by the index's own vector search."""
    col = kb.index.collection("bench")
    hits = 0
    for q in queries:
        exact = set((np.argsort(-(vectors @ q))[:10] + 1).tolist())  # chunk ids start at 1
        candidates = max(search.CANDIDATES, search.CANDIDATES_PER_RESULT * search.DEPTH)  # as search does
        found = {i for i, _ in kb.index.knn(col, q.tolist(), 10, candidates)}
        hits += len(exact & found)
    return hits / (10 * len(queries))


def measure(kb: KnowledgeBase, queries: int, mode: str) -> tuple[float, float]:
    times = []
    for i in range(queries):
        started = time.perf_counter()
        kb.search(["bench"], f"{QUERIES[i % len(QUERIES)]} {i}", k=5, mode=mode)
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the indexes here, and reuse them")
    parser.add_argument(
        "--words", choices=["zipf", "faq"], default="zipf", help="text vocabulary (see zipf_vocabulary)"
    )
    args = parser.parse_args()
    settings = Settings.from_env()
    if args.home:
        settings = replace(settings, home=args.home)
    words = zipf_vocabulary(vocabulary()) if args.words == "zipf" else vocabulary()
    digest = hashlib.sha256(" ".join(words).encode()).hexdigest()[:12]  # a kept index's text source
    work = args.keep or Path(tempfile.mkdtemp(prefix="cove-kb-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    cove = Cove(replace(settings, num_parallel=1))
    try:
        base = base_vectors(cove, words, random.Random(7))
        for size in (int(s) for s in args.sizes.split(",")):
            kb = KnowledgeBase(cove, path=work / f"k{size}-{args.words}-{digest}.db")
            vectors = synthetic(base, size, seed=size)
            filled = _filled(kb)
            if filled != size:
                if filled is not None:  # a run cut short: written again whole
                    kb.index.drop("bench")
                kb.create("bench", "all-minilm")
                started = time.perf_counter()
                fill(kb, vectors, words, random.Random(size))
                print(f"{size:,} chunks written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            kb.search(["bench"], "warm up", k=5)  # the model loads and the file is read once
            query_vectors = np.array(kb.embedder("all-minilm").embed(QUERIES), dtype=np.float32)
            recall = knn_recall(kb, vectors, query_vectors)
            embed_ms = _embed_ms(kb)
            for mode in ("hybrid", "bm25", "vector"):
                p50, p95 = measure(kb, args.queries, mode)
                print(f"{size:>7,} chunks  {mode:<6}  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
            print(
                f"{size:>7,} chunks  query embedding alone: median {embed_ms:.1f} ms; "
                f"vector recall@10 {recall:.3f}"
            )
            kb.close()
    finally:
        cove.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _filled(kb: KnowledgeBase) -> int | None:
    """How many chunks the kept index's collection holds (None: it has none)."""
    try:
        return kb.index.counts("bench")[1]
    except CollectionNotFound:
        return None


def _embed_ms(kb: KnowledgeBase) -> float:
    times = []
    for q in QUERIES * 3:
        started = time.perf_counter()
        kb.embedder("all-minilm").embed([q])
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


if __name__ == "__main__":
    main()
