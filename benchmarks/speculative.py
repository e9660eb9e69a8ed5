"""Decode speed with and without n-gram (prompt-lookup) speculative decoding, and its acceptance.

    .venv/bin/python benchmarks/speculative.py [--model gemma3:270m] [--rounds 3] [--threads 1]
        [--draft-max 16] [--json]

Loads the model with cove's engine code (engine/llamacpp.py) with speculation off and with each
n-gram kind, interleaved round by round, and runs two chats on each: (a) "repeat this passage
with one word changed" (the answer is mostly the prompt: where prompt lookup pays) and (b) a
plain question (it must not pay for nothing). Decode tokens/s and the drafted/accepted counts
are the engine's own timings. Greedy sampling, so every setting writes the same answer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import replace
from typing import Any

from common import ensure_model

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.speculative import apply_speculative
from cove.library.local import Cove

PASSAGE = (
    "The lighthouse stood at the end of a long spit of black rock, and for forty years the same "
    "keeper had climbed its one hundred and twelve steps every evening to light the lamp. He kept "
    "a logbook in which he wrote the weather, the ships that passed, and the birds that rested on "
    "the gallery rail. In winter the spray froze on the glass and he scraped it away with a brass "
    "scraper his father had given him. In summer the tourists came on the ferry and asked him "
    "whether he was lonely, and he told them that the sea was never the same two days running, "
    "which was true, and that he had the gulls for company, which was not quite true. On the last "
    "night of his service he wrote one more line in the logbook, closed it, and left it on the "
    "table beside the lamp for whoever came next."
)
CHATS = {
    "a: repeat and edit": (
        "Repeat the following passage exactly, word for word, but write 'tower' instead of "
        f"'lighthouse'. Write nothing else.\n\n{PASSAGE}"
    ),
    "b: plain question": "Why is the sky blue? Answer in a short paragraph.",
}


def settings(draft_max: int) -> list[tuple[str, int, str]]:
    """(label, the most tokens drafted per step (0: off), n-gram kind)."""
    return [("off", 0, "simple"), ("ngram simple", draft_max, "simple"), ("ngram mod", draft_max, "mod")]


def model_class(kind: str) -> type[LlamaCppModel]:
    """cove's engine with another of llama.cpp's n-gram drafters than cove's default."""

    class Model(LlamaCppModel):
        def _params(self, spec: LoadSpec) -> Any:
            params = super()._params(spec)
            apply_speculative(params, spec.draft_ngram, kind=kind)
            return params

    return Model


def run_chat(model: Any, prompt: str, tokens: int) -> dict[str, float]:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0}
    body["cache_prompt"] = False
    timings = model.chat(body)["timings"]
    return {
        "tps": float(timings["predicted_per_second"]),
        "tokens": float(timings["predicted_n"]),
        "drafted": float(timings.get("draft_n") or 0),
        "accepted": float(timings.get("draft_n_accepted") or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: cove's default)")
    parser.add_argument("--draft-max", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=220)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cove = Cove(Settings())
    ensure_model(cove, args.model)
    request, _, _ = cove.prepare(args.model)
    base = replace(request.spec, num_ctx=2048, num_threads=args.threads)
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for label, draft_max, kind in settings(args.draft_max):
            model = model_class(kind)(replace(base, draft_ngram=draft_max))
            try:
                for chat, prompt in CHATS.items():
                    rows.setdefault((label, chat), []).append(run_chat(model, prompt, args.tokens))
            finally:
                model.close()
    report(rows, args.json)


def report(rows: dict[tuple[str, str], list[dict[str, float]]], as_json: bool) -> None:
    table = []
    for (label, chat), runs in rows.items():
        drafted = sum(r["drafted"] for r in runs)
        table.append(
            {
                "setting": label,
                "chat": chat,
                "median_tps": round(statistics.median(r["tps"] for r in runs), 1),
                "tokens": int(statistics.median(r["tokens"] for r in runs)),
                "drafted": int(drafted),
                "acceptance": round(sum(r["accepted"] for r in runs) / drafted, 2) if drafted else None,
            }
        )
    if as_json:
        print(json.dumps({"load_avg": os.getloadavg(), "rows": table}, indent=2))
        return
    print(f"{'setting':14} {'chat':20} {'tok/s':>7} {'tokens':>6} {'drafted':>7} {'accepted':>8}  vs off")
    for row in table:
        off = next(r for r in table if r["chat"] == row["chat"] and r["setting"] == "off")
        accepted = "-" if row["acceptance"] is None else f"{row['acceptance']:.0%}"
        print(
            f"{row['setting']:14} {row['chat']:20} {row['median_tps']:7.1f} {row['tokens']:6d}"
            f" {row['drafted']:7d} {accepted:>8}  {row['median_tps'] / off['median_tps']:.2f}x"
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
