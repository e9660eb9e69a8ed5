"""Retrieval quality of the knowledge base on real documents: Debian's FAQ (package `debian-faq`).

Each numbered section of the FAQ's plain-text edition becomes one document holding only its
answer (the question heading is left out, and the file is named by its number, so neither
gives the answer away); each question heading is a query, and the document holding its answer is
the one to find. The collection is indexed by cove's own pipeline (parser, chunker, all-minilm in
cove's engine) and searched with BM25 alone, vectors alone, and the hybrid (RRF), reporting
recall@5 and MRR@10 of the right document among the passages returned.

It also measures the relevance threshold (`cove.knowledge.search.RELEVANCE`): the cosine
similarity of the best passage for the FAQ's questions against that of off-topic questions the
FAQ cannot answer, and the cut that best tells them apart.

    .venv/bin/python benchmarks/kb_retrieval.py [--model all-minilm] [--home DIR] [--json]
        [--work DIR] [--postings N]

`--postings N` bounds BM25's work as a large collection does (`cove.knowledge.search.POSTINGS`:
the rarest words while the chunks they are in add up to N): the FAQ is too small for the
default bound to leave any word out, so this shows what the bound costs where it does.

The package is installed with apt-get when missing (root, or sudo without a password).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from common import debian_faq

from cove.config import Settings
from cove.knowledge import search
from cove.knowledge.search import MODES
from cove.knowledge.service import KnowledgeBase
from cove.library.local import Cove

# The FAQ puts a no-break space after a section's number.
HEADING = re.compile(r"^(\d+)\.(\d+)\.[ \u00a0](\S.*)$")
SUBHEADING = re.compile(r"^\d+\.\d+\.\d+\.[ \u00a0]")
CHAPTER = re.compile(r"^Chapter[ \u00a0]\d+\.[ \u00a0]")

#: Questions the FAQ cannot answer: their best passages set the low side of the threshold.
OFF_TOPIC = [
    "How long should I knead bread dough?",
    "What is the capital of Australia?",
    "How do I change a flat bicycle tyre?",
    "Which vitamins are found in oranges?",
    "Who painted the Mona Lisa?",
    "How many players are on a football team?",
    "What is the best way to learn the piano as an adult?",
    "How do I get red wine out of a carpet?",
    "When is the best time to plant tomatoes?",
    "How do whales sleep?",
    "What should I pack for a week of hiking in the Alps?",
    "How do I ask my manager for a raise?",
    "Why is the sky blue?",
    "How do I train a puppy to stop biting?",
    "What are the symptoms of the flu?",
    "How is olive oil made?",
    "What is the plot of Pride and Prejudice?",
    "How much water should I drink each day?",
    "Which countries border Switzerland?",
    "How do I make a good cup of espresso?",
    "What causes earthquakes?",
    "How do I write a wedding speech?",
    "What is the difference between a crocodile and an alligator?",
    "How do I fold a fitted sheet?",
    "What does a notary public do?",
    "How do I care for an orchid?",
    "When did the Roman Empire fall?",
    "What is a good stretching routine for runners?",
    "How do hot air balloons fly?",
    "How should I store fresh herbs?",
]


@dataclass
class Section:
    number: str
    question: str
    answer: str


def sections(text: str) -> list[Section]:
    """Numbered sections at the start of a line (the table of contents is indented)."""
    lines = text.splitlines()
    found: list[Section] = []
    i = 0
    while i < len(lines):
        match = HEADING.match(lines[i])
        if not match:
            i += 1
            continue
        question = [match.group(3).strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(" "):
            question.append(lines[i].strip())  # a heading that wraps onto the next line
            i += 1
        body: list[str] = []
        while i < len(lines) and not HEADING.match(lines[i]) and not CHAPTER.match(lines[i]):
            if not SUBHEADING.match(lines[i]):
                body.append(lines[i].strip())
            i += 1
        answer = re.sub(r"\n{3,}", "\n\n", "\n".join(body)).strip()
        if len(answer) >= 40:
            found.append(Section(f"{match.group(1)}.{match.group(2)}", " ".join(question), answer))
    return found


def write_corpus(folder: Path, items: list[Section]) -> None:
    folder.mkdir(parents=True)
    for s in items:
        (folder / f"section-{s.number}.txt").write_text(s.answer + "\n", encoding="utf-8")


def evaluate(kb: KnowledgeBase, items: list[Section], mode: str) -> dict[str, float]:
    recall, mrr, latencies = 0.0, 0.0, []
    for s in items:
        started = time.perf_counter()
        found = kb.search(["faq"], s.question, k=10, mode=mode)
        latencies.append(time.perf_counter() - started)
        files = [p.file for p in found]
        target = f"section-{s.number}.txt"
        if target in files:
            rank = files.index(target) + 1
            mrr += 1 / rank
            recall += rank <= 5
    n = len(items)
    return {"recall@5": recall / n, "mrr@10": mrr / n, "ms_per_query": 1000 * sum(latencies) / n}


def best_similarity(kb: KnowledgeBase, question: str) -> float:
    """What `relevant()` judges a turn by: the highest similarity among the passages a chat
    turn would get (the top 5)."""
    return max((p.similarity or 0.0 for p in kb.search(["faq"], question, k=5)), default=0.0)


def threshold(kb: KnowledgeBase, items: list[Section]) -> dict[str, object]:
    """The best passage's similarity for answerable and for off-topic questions, and the cut
    that classifies the most of both correctly (ties: the lower cut, which drops fewer answers)."""
    on = [best_similarity(kb, s.question) for s in items]
    off = [best_similarity(kb, q) for q in OFF_TOPIC]
    cuts = [round(t / 100, 2) for t in range(5, 80)]
    best = max(cuts, key=lambda t: (sum(x >= t for x in on) + sum(x < t for x in off), -t))
    curve = {
        f"{t:.2f}": (
            round(sum(x >= t for x in on) / len(on), 3),
            round(sum(x < t for x in off) / len(off), 3),
        )
        for t in (0.10, 0.15, 0.20, 0.25, 0.30, 0.35)
    }
    return {
        "threshold": best,
        "answerable_kept": round(sum(x >= best for x in on) / len(on), 3),
        "off_topic_rejected": round(sum(x < best for x in off) / len(off), 3),
        "answerable_min_median": (round(min(on), 3), round(sorted(on)[len(on) // 2], 3)),
        "off_topic_median_max": (round(sorted(off)[len(off) // 2], 3), round(max(off), 3)),
        "curve (kept, rejected)": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm")
    parser.add_argument("--home", type=Path, help="COVE_HOME holding the model (default: COVE_HOME)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--work", type=Path, help="keep the corpus and index here (a second run reuses them)")
    parser.add_argument("--postings", type=int, help="BM25's bound (default: search.POSTINGS)")
    args = parser.parse_args()
    if args.postings:
        search.POSTINGS = args.postings
    items = sections(debian_faq())
    settings = Settings.from_env()
    if args.home:
        settings = replace(settings, home=args.home)
    work = args.work or Path(tempfile.mkdtemp(prefix="cove-kb-retrieval-"))
    cove = Cove(replace(settings, num_parallel=1))
    try:
        if not (work / "faq").exists():
            write_corpus(work / "faq", items)
        kb = KnowledgeBase(cove, path=work / "knowledge.db")
        if "faq" not in {c.name for c in kb.list()}:
            kb.create("faq", args.model)
            kb.add("faq", [work / "faq"])
        started = time.perf_counter()
        report = kb.sync("faq")
        ingest_s = time.perf_counter() - started
        chunks = kb.info("faq").chunks
        results = {mode: evaluate(kb, items, mode) for mode in MODES}
        cut = threshold(kb, items)
        kb.close()
    finally:
        cove.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "model": args.model,
        "questions": len(items),
        "documents": len(report.added) + report.unchanged,
        "chunks": chunks,
        "postings": search.POSTINGS,
        "ingest_s": round(ingest_s, 1),
        "modes": results,
        "relevance": cut,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"debian-faq: {len(items)} questions, {chunks} chunks, indexed in {ingest_s:.1f} s ({args.model}); "
        f"BM25 bound {search.POSTINGS:,} postings"
    )
    print(f"{'mode':<8} {'recall@5':>9} {'MRR@10':>8} {'ms/query':>9}")
    for mode, r in results.items():
        print(f"{mode:<8} {r['recall@5']:>9.3f} {r['mrr@10']:>8.3f} {r['ms_per_query']:>9.1f}")
    print(f"relevance threshold: {json.dumps(cut)}")


if __name__ == "__main__":
    main()
