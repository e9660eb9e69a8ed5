"""`cove bench`'s measurements: prompt and generation speed, time to first token, parallel streams.

Shaped like llama-bench's table: `pp N` reads an N-token prompt, `tg N @ d D` writes N tokens
after a D-token prompt, plus the time to the first streamed token, and the tokens/s of 1, 2, 4
or 8 answers written at once. Figures are the engine's own timings where it gives them, else
the wall clock. Each run is kept as one JSON line in COVE_HOME/bench.jsonl with the machine's
description, so a later run (another version, setting or machine) can be compared with it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .base import LoadedModel

#: The file under COVE_HOME that keeps every run.
RESULTS_FILE = "bench.jsonl"
#: Filler the prompts are cut from: plain words every tokenizer splits into many tokens.
FILLER = "the quick brown fox jumps over the lazy dog while seven wizards quietly judge boxing "


@dataclass(frozen=True)
class BenchPlan:
    prompts: tuple[int, ...] = (128, 512)
    generate: int = 64
    depths: tuple[int, ...] = (0, 512)
    streams: tuple[int, ...] = (1, 2, 4, 8)
    repetitions: int = 2


@dataclass
class Row:
    test: str
    tokens_per_second: float
    ttft_ms: float | None = None
    tokens: int = 0
    runs: list[float] = field(default_factory=list)


def prompt_of(model: LoadedModel, length: int) -> list[int]:
    """`length` token ids of filler text in the model's own tokenizer (no begin-of-text token)."""
    if length <= 0:
        return []
    piece = model.tokenize(FILLER)
    ids = piece * (length // max(len(piece), 1) + 1)
    return ids[:length]


def _stream(model: LoadedModel, prompt: list[int], tokens: int) -> tuple[float, float, dict[str, Any]]:
    """(seconds to the first token, seconds in all, the engine's timings) of one streamed completion."""
    first: list[float] = []
    started = time.perf_counter()

    def on_chunk(chunk: dict[str, Any]) -> bool:
        if not first and any(
            c.get("text") or (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
        ):
            first.append(time.perf_counter())
        return False

    body = {"prompt": prompt or " ", "max_tokens": tokens, "temperature": 0, "cache_prompt": False}
    body["stream"] = True  # the engine calls back once, at the end, unless asked to stream
    body["ignore_eos"] = True  # a generation test writes all its tokens, whatever the model thinks
    result = model.complete(body, on_chunk)
    done = time.perf_counter()
    return (first[0] if first else done) - started, done - started, dict(result.get("timings") or {})


def prompt_speed(model: LoadedModel, length: int, repetitions: int) -> Row:
    runs, ttfts = [], []
    for _ in range(repetitions):
        ttft, _, timings = _stream(model, prompt_of(model, length), 1)
        speed = timings.get("prompt_per_second") or (length / ttft if ttft > 0 else 0.0)
        runs.append(float(speed))
        ttfts.append(ttft * 1000)
    return Row(f"pp{length}", _mean(runs), _mean(ttfts), length, runs)


def generation_speed(model: LoadedModel, tokens: int, depth: int, repetitions: int) -> Row:
    runs, ttfts = [], []
    for _ in range(repetitions):
        ttft, total, timings = _stream(model, prompt_of(model, depth), tokens)
        speed = timings.get("predicted_per_second") or (tokens / (total - ttft) if total > ttft else 0.0)
        runs.append(float(speed))
        ttfts.append(ttft * 1000)
    name = f"tg{tokens}" + (f" @ d{depth}" if depth else "")
    return Row(name, _mean(runs), _mean(ttfts), tokens, runs)


def parallel_speed(model: LoadedModel, streams: int, tokens: int, repetitions: int) -> Row:
    """All the tokens `streams` answers wrote at once, over the wall time from start to last."""
    runs = [_parallel_once(model, streams, tokens) for _ in range(repetitions)]
    return Row(f"tg{tokens} x{streams}", _mean(runs), None, tokens * streams, runs)


def _parallel_once(model: LoadedModel, streams: int, tokens: int) -> float:
    counts = [0] * streams
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            _, _, timings = _stream(model, prompt_of(model, 16), tokens)
            counts[i] = int(timings.get("predicted_n") or tokens)
        except BaseException as exc:  # reported after the join, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - started)


def run_bench(model: LoadedModel, plan: BenchPlan) -> list[Row]:
    rows = [prompt_speed(model, n, plan.repetitions) for n in plan.prompts]
    rows += [generation_speed(model, plan.generate, d, plan.repetitions) for d in plan.depths]
    rows += [parallel_speed(model, s, plan.generate, plan.repetitions) for s in plan.streams]
    return rows


def record(home: Path, entry: dict[str, Any]) -> Path:
    """Append one run to COVE_HOME/bench.jsonl (one JSON object a line, oldest first)."""
    path = home / RESULTS_FILE
    home.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(entry, default=str) + "\n")
    return path


def earlier_runs(home: Path, model: str) -> list[dict[str, Any]]:
    """Runs kept for `model`, oldest first; a line that does not parse is skipped, not fatal."""
    path = home / RESULTS_FILE
    if not path.exists():
        return []
    runs = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("model") == model:
            runs.append(entry)
    return runs


def rows_to_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
