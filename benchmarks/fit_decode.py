"""Decode cost per token by model, in CPU time as well as wall time: what `cove fit`'s decode
prediction must account for, measured apart from how busy the machine is.

    COVE_HOME=... .venv/bin/python benchmarks/fit_decode.py [--models gemma3:270m smollm2:135m]
        [--rounds 3] [--tokens 96] [--json]

Each model is loaded with cove's engine code in this process on one thread (what the engine
chooses on a busy 2-core machine), and asked a fixed prompt; for each answer it reports the
engine's own tokens/s and the CPU time this process spent per wall second over the answer
(the engine thread's share of a core, since the Python thread only waits). Tokens/s over that
share is the speed on a core of its own: the figure the planner's arithmetic bound predicts.
Models are interleaved round by round so a shared machine's drift hits them alike.
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
from cove.engine.llamacpp import LlamaCppModel
from cove.library.local import Cove
from cove.machine import bandwidth_now

PROMPT = "Count from one to two hundred in words, separated by commas."


def spin_share(seconds: float = 0.3) -> float:
    """The share of a core a CPU-bound thread got just now (its CPU time over wall time)."""
    cpu, wall = time.thread_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        pass
    return min(1.0, (time.thread_time() - cpu) / (time.perf_counter() - wall))


def answer(model: LlamaCppModel, tokens: int, stream: bool = False) -> dict[str, float]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "cache_prompt": False,
        "stream": stream,
    }
    cpu, wall = time.process_time(), time.perf_counter()
    chunks: list[Any] = []
    result = model.chat(body, chunks.append if stream else None)
    timings = result.get("timings") or next(c["timings"] for c in reversed(chunks) if c.get("timings"))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    share = min(1.0, cpu / wall)
    tps = float(timings["predicted_per_second"])
    return {"tps": tps, "share": share, "own_core_tps": tps / share, "n": float(timings["predicted_n"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gemma3:270m", "smollm2:135m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stream", action="store_true", help="Stream the answer, as cove's library does.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cove = Cove(Settings.from_env())
    specs = {}
    for name in args.models:
        ensure_model(cove, name)
        request, _, _ = cove.prepare(name)
        specs[name] = replace(request.spec, num_threads=args.threads, num_ctx=1024)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in args.models}
    for _ in range(args.rounds):
        for name, spec in specs.items():
            model = LlamaCppModel(spec)
            try:
                answer(model, 8)  # warm: the first answer pages the weights in
                cpu, wall = time.thread_time(), time.perf_counter()
                gbs = bandwidth_now()
                spin = (time.thread_time() - cpu) / (time.perf_counter() - wall)
                got = answer(model, args.tokens, args.stream)
                results[name].append({**got, "gbs": gbs, "spin": spin, "load": os.getloadavg()[0]})
            finally:
                model.close()
    report(results, args.json)


def report(results: dict[str, list[dict[str, Any]]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'model':16} {'tok/s':>7} {'share':>6} {'own-core tok/s':>15}  per answer: tok/s@share (load)")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("tps", "share", "own_core_tps")}
        each = ", ".join(
            f"{r['tps']:.0f}@{r['share']:.2f} copy {r['gbs']:.1f} spin {r['spin']:.2f} ({r['load']:.1f})"
            for r in rows
        )
        print(f"{name:16} {med['tps']:7.1f} {med['share']:6.2f} {med['own_core_tps']:15.1f}  {each}")


if __name__ == "__main__":
    main()
