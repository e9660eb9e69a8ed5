"""Issue 4's figures: search latency over 100,000 stored messages, and database size per 1,000.

    .venv/bin/python benchmarks/history_speed.py [--messages 100000] [--queries 50]

The alternative measured in the same run is the naive search a small app would write: a
`LIKE '%word%'` scan over the same messages table, newest first, 20 results.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import median, percentile

from cove.history import History
from cove.history.records import NewConversation, NewMessage

WORDS = [
    "river",
    "mountain",
    "kettle",
    "violin",
    "quantum",
    "harbor",
    "lantern",
    "meadow",
    "copper",
    "orbit",
    "pepper",
    "saddle",
]
STAMP = "2026-11-01T12:00:00+00:00"
RARE = 200  # needle words, each in about 5 messages: the rare term a person usually searches for


def sentence(rng: random.Random, n: int = 40) -> str:
    words = [rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(n)]
    if rng.random() < RARE * 5 / 100_000:
        words[rng.randrange(n)] = f"needle{rng.randrange(RARE)}"
    return " ".join(words)


def conversation(rng: random.Random, number: int, size: int = 20) -> NewConversation:
    messages = [
        NewMessage(position=i, role=("user", "assistant")[i % 2], content=sentence(rng), created_at=STAMP)
        for i in range(size)
    ]
    return NewConversation(
        model="bench",
        created_at=STAMP,
        updated_at=STAMP,
        title=f"chat {number}",
        external_id=f"bench:{number}",
        messages=messages,
    )


def fill(history: History, total: int, rng: random.Random) -> None:
    for start in range(0, total // 20, 250):
        history.import_conversations(
            [conversation(rng, n) for n in range(start, min(start + 250, total // 20))]
        )


def timed(run: Callable[[str], object], queries: list[str]) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        run(query)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cove.db"
        with History(path) as history:
            started = time.perf_counter()
            fill(history, args.messages, rng)
            fill_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).glob("cove.db*"))
        with History(path) as history:
            conn = history._db.conn  # the same connection, to compare like with like

            def scan(query: str) -> object:
                sql = "SELECT id FROM messages WHERE content LIKE ? ORDER BY id DESC LIMIT 20"
                return list(conn.execute(sql, (f"%{query}%",)))

            common = [f"{rng.choice(WORDS)}{rng.randrange(1000)}" for _ in range(args.queries)]
            rare = [f"needle{rng.randrange(RARE)}" for _ in range(args.queries)]
            rows = {
                label: (timed(scan, queries), timed(lambda q: history.search(q, limit=20), queries))
                for label, queries in (("common word (~330 hits)", common), ("rare word (~5 hits)", rare))
            }
    print(
        f"{args.messages} messages of about 40 words stored in {fill_s:.1f} s; database "
        f"{size / 1e6:.1f} MB, {size / (args.messages / 1000) / 1e3:.0f} KB per 1,000 messages"
    )
    print("| query | LIKE scan p50 | cove search p50 | cove search p95 | LIKE / cove |")
    print("|---|---|---|---|---|")
    for label, (like, fts) in rows.items():
        print(
            f"| {label} | {median(like) * 1000:.1f} ms | {median(fts) * 1000:.1f} ms | "
            f"{percentile(fts, 0.95) * 1000:.1f} ms | {median(like) / median(fts):.1f}x |"
        )


if __name__ == "__main__":
    main()
