"""`cove bench MODEL`: prompt and generation speed on this machine, llama-bench's table, kept to compare."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from importlib import metadata
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..engine.base import EngineFactory, LoadSpec
from ..engine.bench import BenchPlan, Row, earlier_runs, record, rows_to_dicts, run_bench
from ..library.local import Cove
from ..machine import this_machine

out = Console(highlight=False)


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"{text!r}: give one or more whole numbers, none negative")
    return values


@click.command(context_settings={"show_default": True})
@click.argument("model")
@click.option("-p", "--prompts", default="128,512", help="Prompt lengths to read (tokens).")
@click.option("-n", "--generate", default=64, type=click.IntRange(1), help="Tokens to write.")
@click.option("-d", "--depths", default="0,512", help="Prompt already read before writing.")
@click.option("-s", "--streams", default="1,2,4,8", help="Answers written at once.")
@click.option("-r", "--repetitions", default=2, type=click.IntRange(1), help="Runs of each test.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(
    model: str, prompts: str, generate: int, depths: str, streams: str, repetitions: int, as_json: bool
) -> None:
    """Measure MODEL here: prompt tokens/s, generation tokens/s, time to first token, parallel streams."""
    plan = BenchPlan(_numbers(prompts), generate, _numbers(depths), _numbers(streams), repetitions)
    settings = Settings.from_env()
    entry = measure(Cove(settings), model, plan)
    entry["machine"] = this_machine(settings.home).to_dict()
    path = record(settings.home, entry)
    if as_json:
        click.echo(json.dumps(entry, indent=2, default=str))
        return
    out.print(_table(entry))
    earlier = earlier_runs(settings.home, entry["model"])[:-1]
    note = (
        f"{len(earlier)} earlier run(s) of this model kept there" if earlier else "the first run kept there"
    )
    out.print(f"\nkept in {path} ({note})")


def measure(cove: Cove, name: str, plan: BenchPlan, factory: EngineFactory | None = None) -> dict[str, Any]:
    """Load `name` with enough slots and context for the plan, run it, close it; the run's record."""
    try:
        request, _, _ = cove.prepare(name)
        spec = _sized(request.spec, plan)
        if factory is None:
            from ..engine.llamacpp import LlamaCppModel

            factory = LlamaCppModel
        started = time.perf_counter()
        loaded = factory(spec)
        load_s = time.perf_counter() - started
        try:
            rows = run_bench(loaded, plan)
        finally:
            loaded.close()
    finally:
        cove.close()
    return {
        "model": spec.name,
        "digest": spec.digest,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine": _engine_version(),
        "threads": spec.num_threads or "default",
        "slots": spec.num_parallel,
        "num_ctx": spec.num_ctx,
        "load_seconds": round(load_s, 3),
        "load_average": os.getloadavg()[0],
        "rows": rows_to_dicts(rows),
    }


def _sized(spec: LoadSpec, plan: BenchPlan) -> LoadSpec:
    longest = max((*plan.prompts, *(d + plan.generate for d in plan.depths), 16 + plan.generate))
    num_ctx = max(256, -(-(longest + 16) // 256) * 256)
    return replace(spec, num_ctx=num_ctx, num_parallel=max(plan.streams))


def _engine_version() -> str | None:
    try:
        return metadata.version("xllamacpp")
    except metadata.PackageNotFoundError:
        return None


def _table(entry: dict[str, Any]) -> Table:
    machine = entry.get("machine") or {}
    title = (
        f"{entry['model']} on {machine.get('cpu_model', 'this machine')}: threads {entry['threads']},"
        f" xllamacpp {entry['engine']}, load average {entry['load_average']:.1f}"
    )
    table = Table("test", "t/s", "runs", "first token", box=None, title=title, title_justify="left")
    for row in entry["rows"]:
        runs = " ".join(f"{r:.1f}" for r in row["runs"])
        ttft = f"{row['ttft_ms']:.0f} ms" if row.get("ttft_ms") is not None else ""
        table.add_row(row["test"], f"{row['tokens_per_second']:.1f}", runs, ttft)
    return table


__all__ = ["Row", "bench", "measure"]
