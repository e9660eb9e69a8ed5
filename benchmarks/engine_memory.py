"""What an engine process really holds against what cove counts for it (issue 9's /api/ps figure).

    .venv/bin/python benchmarks/engine_memory.py [--model gemma3:270m] [--requests 40] [--words 300]
        [--engine-default-cache]

Loads the model in its own engine process, as `cove serve` does, sends distinct prompts one
after another (each one pushes the last out of its slot, into the engine's prompt cache), and
prints the process's resident and writable memory after the load and after the requests, beside
the estimate `/api/ps` reports. `--engine-default-cache` gives llama.cpp its own 8 GiB prompt
cache instead of cove's cap, to show what the cap saves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import psutil
from common import ensure_model

import cove.engine.scheduler as scheduler
from cove.config import Settings
from cove.engine.process import IsolatedModel
from cove.library.local import Cove

MB = 1e6


def status(pid: int) -> dict[str, float]:
    """MB from /proc: resident in all, anonymous, file-backed (the weights' map), and VmData (what
    RLIMIT_DATA counts)."""
    wanted = ("VmRSS", "RssAnon", "RssFile", "VmData")
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[key] = int(value.split()[0]) * 1024 / MB
    return figures


def shown(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f} MB" for k, v in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3:270m")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--engine-default-cache", action="store_true")
    args = parser.parse_args()
    if args.engine_default_cache:

        def default_cache(info: dict[str, Any], num_ctx: int, embedding: bool = False) -> int:
            return 8192

        scheduler.prompt_cache_mib = default_cache  # type: ignore[assignment]
    with Cove(Settings.from_env(), factory=IsolatedModel) as cove:
        ensure_model(cove, args.model)
        cove.chat(args.model, [{"role": "user", "content": "Hi"}], options={"num_predict": 1})
        (runner,) = cove.scheduler.loaded()
        assert isinstance(runner.model, IsolatedModel)
        pid = runner.model._process.pid
        bound = runner.spec.memory_limit / MB
        print(f"prompt cache {runner.spec.cache_ram_mib} MiB, memory bound {bound:.0f} MB")
        print(f"estimate (/api/ps): {runner.size / MB:.0f} MB")
        print(f"after the load: {shown(status(pid))}")
        started = time.monotonic()
        for i in range(args.requests):
            text = f"Conversation {i}. " + " ".join(f"word{i}x{j}" for j in range(args.words))
            cove.chat(args.model, [{"role": "user", "content": text}], options={"num_predict": 1})
        took = time.monotonic() - started
        rss = psutil.Process(pid).memory_info().rss / MB
        print(f"after {args.requests} requests ({took:.0f} s): {shown(status(pid))}; psutil rss {rss:.0f} MB")


if __name__ == "__main__":
    main()
