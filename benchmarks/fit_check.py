"""Issue 12's decode and memory targets, run after run: `cove fit --check` on one or more
stores, quiet and with another program spinning on one core, interleaved.

    .venv/bin/python benchmarks/fit_check.py HOME [HOME ...] [--rounds 2] [--no-busy] [--json]

Each round runs the check once per store quiet, then once per store with a CPU-bound process
on one core (on a busy machine the engine chooses fewer threads, a different regime), so the
machine's drift falls on every store and both regimes alike. It prints each model's predicted
and measured decode speed, the spread of the check's five answers, its error and its memory
error, then the range of errors per model and thread count against the targets (decode
±25%, memory ±15%). A store is a COVE_HOME with models pulled; a fresh one beside one used for
a while shows what the stored answers' factor adds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

COVE = Path(sys.executable).with_name("cove")


def spin() -> None:
    while True:
        pass


def check(home: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "COVE_HOME": str(home)}
    done = subprocess.run(
        [str(COVE), "fit", "--check", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def run(home: Path, busy: bool) -> list[dict[str, Any]]:
    spinner = multiprocessing.Process(target=spin, daemon=True) if busy else None
    if spinner:
        spinner.start()
    try:
        load = os.getloadavg()[0]
        return [{**c, "store": home.name, "busy": busy, "load": round(load, 2)} for c in check(home)]
    finally:
        if spinner:
            spinner.terminate()
            spinner.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homes", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-busy", action="store_true", help="Quiet runs only.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for busy in (False,) if args.no_busy else (False, True):
            for home in args.homes:
                for row in run(home, busy):
                    rows.append(row)
                    if not args.json:
                        print(_line(row), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    summary(rows)


def _line(c: dict[str, Any]) -> str:
    slowest, fastest = c["measured_range"]
    return (
        f"{c['store']:12} {'busy' if c['busy'] else 'quiet':5} load {c['load']:4.2f} {c['model']:14} "
        f"{c['threads']} thread(s): predicted {c['predicted_decode_tps']:6.1f} measured "
        f"{c['measured_decode_tps']:6.1f} tok/s (answers {slowest:.1f} to {fastest:.1f}) "
        f"decode {c['decode_error']:+.0%} memory {c['memory_error']:+.0%}"
    )


def summary(rows: list[dict[str, Any]]) -> None:
    errors: dict[tuple[str, int], list[float]] = defaultdict(list)
    memory: list[float] = []
    for c in rows:
        errors[(c["model"], c["threads"])].append(c["decode_error"])
        memory.append(c["memory_error"])
    print()
    for (model, threads), found in sorted(errors.items()):
        inside = sum(abs(e) <= 0.25 for e in found)
        print(
            f"{model:14} {threads} thread(s): decode {min(found):+.0%} to {max(found):+.0%}, "
            f"{inside} of {len(found)} within ±25%"
        )
    inside = sum(abs(e) <= 0.15 for e in memory)
    print(f"memory {min(memory):+.0%} to {max(memory):+.0%}, {inside} of {len(memory)} within ±15%")


if __name__ == "__main__":
    main()
