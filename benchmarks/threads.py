"""Decode speed by engine thread count and poll level, on a quiet machine and with one core busy.

    .venv/bin/python benchmarks/threads.py [--model gemma3:270m] [--rounds 2] [--requests 3]
        [--tokens 64] [--json]

Loads the model with cove's own engine code (engine/llamacpp.py) once per setting and round,
and for each load measures decode tokens/s (the engine's own `predicted_per_second`) with the
machine as it is ("quiet") and with a CPU-bound process spinning beside it ("busy", not pinned:
the scheduler puts it where it likes, as a laptop's other programs are). Settings and
conditions are interleaved in one run so a shared machine's drift hits them alike. The load
average is printed with each figure: on a machine other people use, "quiet" is only quieter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from common import ensure_model

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.library.local import Cove

PROMPT = "Count from one to two hundred in words, separated by commas."
#: (label, threads (0: cove's default, chosen at load), poll (None: cove's default))
SETTINGS: list[tuple[str, int, int | None]] = [
    ("old default: 2 threads, poll 50", 2, 50),
    ("1 thread", 1, 50),
    ("2 threads, poll 0", 2, 0),
    ("cove default (chosen at load)", 0, None),
]


def model_class(poll: int | None) -> type[LlamaCppModel]:
    class Model(LlamaCppModel):
        def _params(self, spec: LoadSpec) -> Any:
            params = super()._params(spec)
            if poll is not None:
                params.cpuparams.poll = params.cpuparams_batch.poll = poll
            self.threads_used = (params.cpuparams.n_threads, params.cpuparams.poll)
            return params

    return Model


def spinner() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def decode_speeds(model: LlamaCppModel, requests: int, tokens: int) -> list[float]:
    body = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "cache_prompt": False,
    }
    speeds = []
    for _ in range(requests):
        result = model.chat(dict(body))
        speeds.append(float(result["timings"]["predicted_per_second"]))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("COVE_NUM_THREADS", None)
    cove = Cove(Settings())
    ensure_model(cove, args.model)
    request, _, _ = cove.prepare(args.model)
    base = replace(request.spec, num_threads=0, num_ctx=1024)
    results: dict[tuple[str, str], list[float]] = {}
    loads: dict[tuple[str, str], list[float]] = {}
    chosen: dict[str, list[tuple[int, int]]] = {}
    for _ in range(args.rounds):
        for label, threads, poll in SETTINGS:
            for condition in ("quiet", "busy"):
                other = spinner() if condition == "busy" else None
                try:
                    time.sleep(0.5)  # let the spinner show in what the load-time choice samples
                    model = model_class(poll)(replace(base, num_threads=threads))
                    try:
                        speeds = decode_speeds(model, args.requests, args.tokens)
                        chosen.setdefault(f"{label} [{condition}]", []).append(model.threads_used)
                    finally:
                        model.close()
                finally:
                    if other is not None:
                        other.kill()
                        other.wait()
                results.setdefault((label, condition), []).extend(speeds)
                loads.setdefault((label, condition), []).append(os.getloadavg()[0])
    report(results, loads, chosen, args.json)


def report(
    results: dict[tuple[str, str], list[float]],
    loads: dict[tuple[str, str], list[float]],
    chosen: dict[str, list[tuple[int, int]]],
    as_json: bool,
) -> None:
    rows = []
    for (label, condition), speeds in results.items():
        rows.append(
            {
                "setting": label,
                "condition": condition,
                "median_tps": round(statistics.median(speeds), 1),
                "min_tps": round(min(speeds), 1),
                "max_tps": round(max(speeds), 1),
                "load_avg": [round(x, 2) for x in loads[(label, condition)]],
                "threads": chosen.get(f"{label} [{condition}]"),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    head = f"{'setting':34} {'cond':6} {'median':>7} {'min':>7} {'max':>7}"
    print(f"{head}  (threads, poll) per round; load avg (1 min)")
    for row in rows:
        print(
            f"{row['setting']:34} {row['condition']:6} {row['median_tps']:7.1f} {row['min_tps']:7.1f}"
            f" {row['max_tps']:7.1f}  {row['threads']!s} {row['load_avg']}"
        )
    for condition in ("quiet", "busy"):
        best = max(r["median_tps"] for r in rows if r["condition"] == condition)
        mine = next(r for r in rows if r["condition"] == condition and r["setting"].startswith("cove"))
        old = next(r for r in rows if r["condition"] == condition and r["setting"].startswith("old"))
        print(
            f"{condition}: cove default {mine['median_tps']:.1f} = {mine['median_tps'] / best:.2f}x best,"
            f" {mine['median_tps'] / old['median_tps']:.2f}x old default"
        )


if __name__ == "__main__":
    main()
