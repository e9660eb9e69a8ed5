"""`cove tune BASE --data PATH… --name NEW`: fine-tune a LoRA adapter on your data and store it as a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..tune.plan import TuneSettings, human_time

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class TuneProgress:
    """The run's messages on stderr, and a progress bar with step, loss, tokens/s and ETA."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.task: Any = None

    def phase(self, text: str) -> None:
        err.print(text)

    def warn(self, text: str) -> None:
        err.print(f"[yellow]{text}[/yellow]")

    def start(self, done: int, total: int) -> None:
        columns = (
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tokens/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=err)
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, completed=done, loss="-", speed="-")

    def step(self, step: int, total: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.3f}", speed=f"{tokens_per_s:.0f}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _modules(value: str) -> tuple[str, ...]:
    modules = tuple(m.strip() for m in value.split(",") if m.strip())
    if not modules:
        raise click.BadParameter("name at least one module, e.g. q_proj,v_proj")
    return modules


@click.command()
@click.argument("base")
@click.option(
    "--data",
    "paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="JSONL chats, a cove or ChatGPT history export, documents (.txt, .md, PDF, DOCX, HTML, ...) "
    "or a folder of them (repeatable).",
)
@click.option("--from-history", help="Conversations from cove's history: a search query, or ids.")
@click.option("--name", required=True, help="The new model's name.")
@click.option("--rank", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=16.0, show_default=True)
@click.option(
    "--target-modules", default="q_proj,v_proj", show_default=True, help="Comma-separated module names."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--epochs", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option(
    "--steps", type=click.IntRange(1, 10_000_000), help="Exactly this many steps (instead of --epochs)."
)
@click.option("--seq-len", type=click.IntRange(16, 32768), default=512, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 0.9),
    default=0.1,
    show_default=True,
    help="Share held out to measure (at least 3 examples).",
)
@click.option("--checkpoint-every", type=click.IntRange(1), default=10, show_default=True, help="Steps.")
@click.option(
    "--max-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=24.0,
    show_default=True,
    help="Refuse a run estimated to take longer.",
)
@click.option("--restart", is_flag=True, help="Discard a checkpoint of an earlier run under this name.")
@click.option("--dry-run", is_flag=True, help="Show the plan (after a short warm-up) and stop.")
@click.pass_obj
def tune(
    ctx: Any,
    base: str,
    paths: tuple[Path, ...],
    from_history: str | None,
    name: str,
    rank: int,
    alpha: float,
    target_modules: str,
    lr: float,
    epochs: int,
    steps: int | None,
    seq_len: int,
    batch_size: int,
    seed: int,
    holdout: float,
    checkpoint_every: int,
    max_hours: float,
    restart: bool,
    dry_run: bool,
) -> None:
    """Fine-tune BASE on your data into a new model NAME (a LoRA adapter on the unchanged base).

    Part of the data is held out: the base is measured on it first, then the tuned model, and
    both are shown. Ctrl-C (or a crash) keeps a checkpoint: the same command resumes.
    """
    from ..tune.checkpoint import FILE
    from ..tune.job import TuneRequest, work_folder
    from ..tune.job import tune as run_tune

    settings = TuneSettings(
        rank=rank,
        alpha=alpha,
        target_modules=_modules(target_modules),
        lr=lr,
        epochs=epochs,
        steps=steps,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=seed,
        holdout=holdout,
        checkpoint_every=checkpoint_every,
    )
    request = TuneRequest(
        base=base,
        name=name,
        paths=list(paths),
        from_history=from_history,
        settings=settings,
        dry_run=dry_run,
        restart=restart,
        max_hours=max_hours,
    )
    reporter = TuneProgress()
    try:
        result = run_tune(ctx.cove, request, reporter)
    except KeyboardInterrupt:
        reporter.stop()
        kept = (work_folder(ctx.cove.settings.home, name) / FILE).is_file()
        if kept:
            err.print(f"stopped; a checkpoint is kept: run the same command to resume '{name}'")
        else:
            err.print("stopped before training began; nothing to resume")
        raise click.exceptions.Exit(130) from None
    if dry_run:
        out.print("dry run: nothing trained")
        return
    show_figures(result.details)
    out.print(f"created '{result.name}': `cove run {result.name}`")


def show_figures(tuned: dict[str, Any]) -> None:
    """Before/after on the held-out examples, and the sample answers side by side."""
    before, after = tuned.get("before") or {}, tuned.get("after") or {}
    table = Table("held out", "base", "tuned", box=None)
    table.add_row("loss", f"{before.get('loss', 0):.3f}", f"{after.get('loss', 0):.3f}")
    table.add_row("perplexity", f"{before.get('perplexity', 0):.1f}", f"{after.get('perplexity', 0):.1f}")
    out.print(table)
    for old, new in zip(before.get("samples", []), after.get("samples", []), strict=False):
        out.print(f"[bold]prompt[/bold]   {old['prompt']}")
        out.print(f"  expected {old['expected']}")
        out.print(f"  base     {old['answer']}")
        out.print(f"  tuned    {new['answer']}")
    if tuned.get("train_seconds"):
        out.print(
            f"trained {tuned.get('steps')} steps in {human_time(tuned['train_seconds'])} "
            f"({tuned.get('tokens_per_s')} tokens/s)"
        )


def show_tuned(tuned: dict[str, Any]) -> None:
    """`cove show` of a tuned model: its data, settings and figures."""
    data, settings = tuned.get("data") or {}, tuned.get("settings") or {}
    out.print("\n[bold]Fine-tuned[/bold]")
    sources = ", ".join(f"{name} ({count})" for name, count in (data.get("sources") or {}).items())
    out.print(
        f"data      {data.get('train')} examples trained, {data.get('held_out')} held out; from {sources}"
    )
    if data.get("skipped") or data.get("truncated"):
        out.print(
            f"          {data.get('skipped', 0)} left out, "
            f"{data.get('truncated', 0)} cut to the sequence length"
        )
    keys = ("rank", "alpha", "target_modules", "lr", "epochs", "steps", "seq_len", "batch_size", "seed")
    out.print("settings  " + ", ".join(f"{k} {_value(settings.get(k))}" for k in keys if k in settings))
    show_figures(tuned)


def _value(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)
