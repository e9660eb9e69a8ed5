"""Decode speed with and without n-gram (prompt-lookup) speculative decoding, and its acceptance.

    .venv/bin/python benchmarks/speculative.py [--model gemma3:270m] [--rounds 5] [--threads 1]
        [--tokens 200] [--draft-max 16] [--try mod:24:16 --try mod:12:8:32 ...] [--json]

Each round loads the model with cove's engine code (engine/llamacpp.py) once with speculation
off and once with each setting tried (cove's default, engine/speculative.py, first), in an
order that rotates round by round, and runs two chats on each fresh load: (a) "repeat this
passage with one word changed" (the answer is mostly the prompt: where prompt lookup pays) and
(b) a plain question (it must not pay for nothing). A fresh load each time, because "mod"
remembers every context it has seen: the same question asked again would be drafted from the
last answer. Decode tokens/s and the drafted/accepted counts are the engine's own timings; the
ratio is the median over rounds of each round's ratio to that round's "off". On a busy machine
wall-clock speed swings with the other programs, so the CPU time the process spent on each
answer is reported too (tokens per CPU-second, prompt included; one engine thread with
--threads 1 makes it the engine's work). Greedy sampling, so every setting should write the
same answer (checked: a differing answer is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from typing import Any

from common import ensure_model

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.speculative import DEFAULT_DRAFT_NGRAM, DEFAULT_NGRAM, Ngram, apply_speculative
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
OFF = "off"


Tried = tuple[Ngram, int | None]


def parse_try(text: str) -> Tried:
    """`kind:n_match:n_min[:n_max]`, e.g. mod:24:16 or mod:12:8:32 (n_max: --draft-max)."""
    kind, n_match, n_min, *n_max = text.split(":")
    return Ngram(kind, int(n_match), int(n_min)), int(n_max[0]) if n_max else None


def label(ngram: Ngram, n_max: int) -> str:
    return f"{ngram.kind} {ngram.n_match}/{ngram.n_min}/{n_max}"


def model_class(ngram: Ngram) -> type[LlamaCppModel]:
    """cove's engine with other n-gram settings than cove's default."""

    class Model(LlamaCppModel):
        def _params(self, spec: LoadSpec) -> Any:
            params = super()._params(spec)
            apply_speculative(params, spec.draft_ngram, ngram=ngram)
            return params

    return Model


def run_chat(model: Any, prompt: str, tokens: int) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0}
    body["cache_prompt"] = False
    cpu = time.process_time()
    result = model.chat(body)
    cpu = time.process_time() - cpu
    timings = result["timings"]
    return {
        "tps": float(timings["predicted_per_second"]),
        "cpu_tps": float(timings["predicted_n"]) / max(cpu, 1e-6),
        "tokens": float(timings["predicted_n"]),
        "drafted": float(timings.get("draft_n") or 0),
        "accepted": float(timings.get("draft_n_accepted") or 0),
        "text": result["choices"][0]["message"]["content"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="engine threads (0: cove's default)")
    parser.add_argument("--draft-max", type=int, default=DEFAULT_DRAFT_NGRAM)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument(
        "--try",
        dest="tries",
        action="append",
        type=parse_try,
        default=[],
        help="another n-gram setting, kind:n_match:n_min[:n_max] (mod:12:8:32)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cove = Cove(Settings())
    ensure_model(cove, args.model)
    request, _, _ = cove.prepare(args.model)
    base = replace(request.spec, num_ctx=2048, num_threads=args.threads, draft_ngram=0)
    tried = [(DEFAULT_NGRAM, args.draft_max), *[(t, n or args.draft_max) for t, n in args.tries]]
    tried = list(dict.fromkeys(tried))
    settings: list[tuple[str, Ngram | None, int]] = [(OFF, None, 0), *[(label(t, n), t, n) for t, n in tried]]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    load_avgs = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        shift = round_ % len(settings)
        for name, ngram, n_max in settings[shift:] + settings[:shift]:
            load = replace(base, draft_ngram=n_max)
            model = (LlamaCppModel if ngram is None else model_class(ngram))(load)
            try:
                for chat, prompt in CHATS.items():
                    rows.setdefault((name, chat), []).append(run_chat(model, prompt, args.tokens))
            finally:
                model.close()
        load_avgs.append(os.getloadavg()[0])
    report(rows, load_avgs, args.json)


def summary(rows: dict[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    table = []
    for (name, chat), runs in rows.items():
        off = rows[(OFF, chat)]
        drafted = sum(r["drafted"] for r in runs)
        ratios = [r["tps"] / o["tps"] for r, o in zip(runs, off, strict=True)]
        cpu_ratios = [r["cpu_tps"] / o["cpu_tps"] for r, o in zip(runs, off, strict=True)]
        table.append(
            {
                "setting": name,
                "chat": chat,
                "median_tps": round(statistics.median(r["tps"] for r in runs), 1),
                "vs_off": round(statistics.median(ratios), 2),
                "ratios": [round(x, 2) for x in ratios],
                "per_cpu_s_vs_off": round(statistics.median(cpu_ratios), 2),
                "tokens": int(statistics.median(r["tokens"] for r in runs)),
                "drafted": int(drafted),
                "acceptance": round(sum(r["accepted"] for r in runs) / drafted, 2) if drafted else None,
                "same_answer": all(r["text"] == o["text"] for r, o in zip(runs, off, strict=True)),
            }
        )
    return table


def report(rows: dict[tuple[str, str], list[dict[str, Any]]], load_avgs: list[float], as_json: bool) -> None:
    table = summary(rows)
    if as_json:
        print(json.dumps({"load_avg_1m": load_avgs, "rows": table}, indent=2))
        return
    head = f"{'setting':16} {'chat':20} {'tok/s':>6} {'tokens':>6} {'drafted':>7} {'accepted':>8}"
    print(f"{head}  vs off, per CPU-s")
    for row in table:
        accepted = "-" if row["acceptance"] is None else f"{row['acceptance']:.0%}"
        same = "" if row["same_answer"] else "  (answer differs!)"
        print(
            f"{row['setting']:16} {row['chat']:20} {row['median_tps']:6.1f} {row['tokens']:6d}"
            f" {row['drafted']:7d} {accepted:>8}  {row['vs_off']:.2f}x {row['per_cpu_s_vs_off']:.2f}x"
            f"  {row['ratios']}{same}"
        )
    print(f"1-minute load average, start and after each round: {[round(x, 1) for x in load_avgs]}")


if __name__ == "__main__":
    main()
