"""Shared pieces of the benchmark scripts: statistics, the store, the engine run directly."""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xllamacpp

from cove.config import Settings
from cove.engine.threads import choose_threads
from cove.library.local import Cove

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def ensure_model(cove: Cove, name: str) -> Path:
    """The model's blob path, pulling it first if needed (the bundled one needs no network)."""
    try:
        manifest = cove.model(name)
    except Exception:
        print(f"pulling {name} ...", file=sys.stderr)
        manifest = cove.pull(name)
    return cove.store.model_path(manifest)


def direct_server(
    path: Path, template: str | None, n_ctx: int, parallel: int, threads: int | None = None
) -> Any:
    """xllamacpp with the same settings cove uses, but none of cove's code in the way.

    Threads and poll are chosen as cove's engine chooses them at load (engine/threads.py:
    the physical cores idle now, or `threads`, default COVE_NUM_THREADS, when set; workers
    sleep rather than spin when cores are shared), so a comparison against cove measures cove's
    code, not a different thread setting: on a busy machine all cores with poll 50 decode
    several times slower than cove's choice."""
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx * parallel
    params.n_parallel = parallel
    chosen = choose_threads(Settings.from_env().num_threads if threads is None else threads)
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = chosen.count
    params.cpuparams.poll = params.cpuparams_batch.poll = chosen.poll
    params.verbosity = -1
    if template:
        params.chat_template = template
        params.use_jinja = "{" in template
    return xllamacpp.Server(params)


def timed_stream(run: Callable[[Callable[[dict[str, Any]], bool]], Any]) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s after the first, tokens) of one streamed answer."""
    stamps: list[float] = []
    started = time.perf_counter()

    def on_chunk(chunk: dict[str, Any]) -> bool:
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                stamps.append(time.perf_counter())
        return False

    run(on_chunk)
    return stream_figures(started, stamps)


def stream_figures(started: float, stamps: list[float]) -> tuple[float, float, int]:
    if not stamps:
        return float("nan"), float("nan"), 0
    ttft = stamps[0] - started
    span = stamps[-1] - stamps[0]
    speed = (len(stamps) - 1) / span if span > 0 else float("nan")
    return ttft, speed, len(stamps)


def openai_stream(
    client: Any, base: str, model: str, tokens: int, prompt: str = PROMPT
) -> tuple[float, float, int]:
    """One streamed /v1/chat/completions answer of `tokens` greedy tokens, timed at each token
    that arrives: (time to first token, decode tokens/s, tokens) as `stream_figures` gives them."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    stamps: list[float] = []
    started = time.perf_counter()
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            for choice in json.loads(line[6:]).get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
    return stream_figures(started, stamps)


#: Debian's FAQ in plain text (package `debian-faq`): the knowledge-base benchmarks' real text.
FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")


def debian_faq() -> str:
    """The FAQ's text, installing the package with apt-get when missing (root, or sudo without a
    password): a benchmark must not quietly measure other text."""
    if not FAQ.exists():
        print("installing debian-faq with apt-get ...", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "debian-faq"], check=True, env=env)
    return gzip.decompress(FAQ.read_bytes()).decode("utf-8")
