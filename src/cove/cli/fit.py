"""`cove fit MODEL`: the plan cove would load a model with on this machine, the speeds it
predicts, and whether it fits, before any download (`--json` for scripts)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..engine import fitting, llama_fit, planner
from ..errors import InvalidName, ModelNotFound
from ..history.measurements import Measured, Measurements
from ..library.drafts import draft_of
from ..machine import GB, Machine, this_machine
from ..store import catalog, remote_header
from ..store.huggingface import parse_hf_ref
from ..store.models import ModelStore
from .format import human_size

if TYPE_CHECKING:
    from ..engine.calibration import Check

out = Console(highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--ctx",
    "num_ctx",
    type=click.IntRange(min=planner.MIN_CTX, max=planner.MAX_CTX),
    help="Context length to plan for (default 4096, or the model's own if smaller).",
)
@click.option("--quant", help="Plan for another quantization of the model (Q8_0, Q4_K_M, ...).")
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Slots (`cove serve` uses 8).",
)
@click.option("--check", is_flag=True, help="Load stored models and compare the plan with what they take.")
def fit(
    model: str | None, as_json: bool, num_ctx: int | None, quant: str | None, parallel: int, check: bool
) -> None:
    """Will MODEL run here, and how fast? A stored model, a catalog name, or hf.co/ORG/REPO[:QUANT]
    (only its header is read). With --check: predicted against measured for the stored models
    (or MODEL), each loaded and asked three times for 64 tokens (the median answer counts)."""
    settings = Settings.from_env()
    if check:
        return check_store(settings, model, as_json)
    if not model:
        raise click.UsageError("name a model (or use --check for the stored ones)")
    figures, source = model_figures(model, settings, quant)
    machine = this_machine(settings.home)
    threads = settings.num_threads or None
    figures = replace(figures, draft_ngram=settings.draft_ngram)
    if source == "store":  # the file is here: llama.cpp's own fit can say what it will take
        store = ModelStore(settings.home)
        stored = store.get(model)
        drafted = int(stored.recipe_obj().parameters.get("draft_ngram", settings.draft_ngram))
        path = store.model_path(stored)
        figures = replace(figures, draft_ngram=drafted)
        fits = llama_fit.FitCache(settings.home)
        figures = fitting.with_llama_fit(
            figures, path, num_ctx, parallel, draft_ngram=drafted, fits=fits, digest=stored.digest
        )
    stored_name = model if source == "store" else None
    scale, measured = calibrated(settings, stored_name, num_ctx, figures, machine)
    plan = planner.plan(
        figures, machine, num_ctx=num_ctx, quant=quant, parallel=parallel, threads=threads, decode_scale=scale
    )
    plan = with_measured(plan, measured)
    if as_json:
        found = measured.to_dict() if measured else None
        data = {"source": source, "plan": plan.to_dict(), "measured": found, "decode_scale": scale}
        return print_json({**data, "machine": machine.to_dict()})
    out.print(plan_table(plan, machine, source))
    if measured is not None:
        out.print(f"measured here: {_measured(measured)} (the plan uses these figures)")
    elif scale != 1.0:
        out.print(f"speed scaled by {scale:.2f}: what this machine measured against cove's predictions")


def calibrated(
    settings: Settings,
    stored: str | None,
    num_ctx: int | None,
    figures: planner.ModelFigures,
    machine: Machine,
) -> tuple[float, Measured | None]:
    """The decode factor this machine's measurements give on the engine threads it would get,
    and a stored model's own figures."""
    scale = fitting.decode_scale(settings.home, machine, settings.num_threads or None)
    measurements = Measurements.if_any(settings.home) if stored is not None else None
    if stored is None or measurements is None:
        return scale, None
    with measurements:
        digest = ModelStore(settings.home).get(stored).digest
        ctx = num_ctx or planner.plan(figures, machine).num_ctx
        return scale, measurements.of(digest, ctx)


def with_measured(plan: planner.Plan, measured: Measured | None) -> planner.Plan:
    """The plan with what the model measured here in place of the predictions."""
    if measured is None:
        return plan
    memory = dict(plan.memory)
    if measured.peak_bytes and plan.parallel == 1:
        memory["at_load"] = measured.peak_bytes
    decode = measured.decode_tps or plan.decode_tps
    prompt = measured.prompt_tps or plan.prompt_tps
    return replace(plan, memory=memory, decode_tps=decode, prompt_tps=prompt)


def _measured(m: Measured) -> str:
    parts = [f"{m.runs} run{'s' if m.runs > 1 else ''}"]
    if m.peak_bytes:
        parts.append(f"peak {m.peak_bytes / GB:.2f} GB at num_ctx {m.num_ctx}")
    if m.decode_tps:
        parts.append(f"{tps(m.decode_tps)} tokens/s writing")
    if m.prompt_tps:
        parts.append(f"{tps(m.prompt_tps)} tokens/s reading")
    return ", ".join(parts)


def model_figures(
    model: str, settings: Settings, quant: str | None = None
) -> tuple[planner.ModelFigures, str]:
    """What the planner needs of MODEL, and where it came from: "store", "catalog" or "hf".
    A stored model asked for in another quant is planned from the catalog's figures."""
    if parse_hf_ref(model) is not None:
        remote = remote_header.read_remote(model, settings)
        refs = {q: remote.pull_ref(q) for q in remote.quants}
        refs[remote.quant] = model
        name = f"{remote.ref.repo_id}:{remote.quant}"
        return planner.ModelFigures(name, remote.info, remote.quants, refs), "hf"
    store = ModelStore(settings.home)
    try:
        stored = store.get(model) if store.has(model) else None
    except InvalidName:
        stored = None
    entry = catalog.find(model)
    if stored is not None:
        own = fitting.manifest_figures(stored, draft_of(stored, store))
        other = quant is not None and quant.upper() != own.default_quant.upper()
        if not (other and entry is not None):
            return own, "store"
    figures = fitting.entry_figures(entry) if entry is not None else None
    if figures is None:
        raise ModelNotFound(
            f"'{model}' is not in the store or the catalog: see `cove list` and `cove list --available`, "
            "or name a Hugging Face repo as hf.co/OWNER/REPO[:QUANT]"
        )
    return figures, "catalog"


def plan_table(plan: planner.Plan, machine: Machine, source: str) -> Table:
    table = Table(box=None, show_header=False, title=f"{escape(plan.model)} ({source})", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", f"{plan.quant}, {plan.weights / GB:.2f} GB: {escape(plan.ref)}")
    table.add_row("plan", _settings(plan))
    table.add_row("memory", _memory(plan))
    table.add_row("speed", _speed(plan, machine))
    style = {planner.FITS: "green", planner.FITS_IF_FREED: "yellow"}.get(plan.verdict, "red")
    table.add_row("verdict", f"[{style}]{plan.verdict}[/{style}]: {escape(plan.reason)}")
    if plan.levers:
        table.add_row("to fit", "; ".join(plan.levers))
    if plan.trained_ctx and plan.num_ctx > plan.trained_ctx:
        table.add_row("note", f"num_ctx is past the {plan.trained_ctx} tokens the model was trained for")
    if plan.verdict != planner.FITS:
        table.add_row("instead", escape(planner.describe_suggestion(plan)))
    return table


def _settings(plan: planner.Plan) -> str:
    slots = f"{plan.parallel} slot{'s' if plan.parallel > 1 else ''}"
    if plan.gpu_layers == 0:
        where = f"all {plan.layers} layers on the CPU"
    else:
        where = f"{plan.gpu_layers} of {plan.layers} layers on the GPU"
    return f"num_ctx {plan.num_ctx}, {slots}, KV cache {plan.kv_type}, {where}"


def _memory(plan: planner.Plan) -> str:
    m = plan.memory
    parts = (
        f"weights {m['weights'] / GB:.2f}",
        f"KV cache {m['kv_cache'] / GB:.2f}",
        f"prompt cache {m['prompt_cache'] / GB:.2f}",
        f"buffers {m['overhead'] / GB:.2f}",
    )
    where = f", {m['vram'] / GB:.1f} GB of it on the GPU" if m["vram"] else ""
    at_load = f"{m['at_load'] / GB:.2f} GB once loaded, up to " if "at_load" in m else ""
    fills = f"{at_load}{m['total'] / GB:.2f} GB as the prompt cache fills{where}"
    return f"{fills} ({plan.memory_by}): " + " + ".join(parts)


def _speed(plan: planner.Plan, machine: Machine) -> str:
    basis = f"RAM bandwidth {machine.bandwidth_gbs:.1f} GB/s" if machine.bandwidth_gbs else "a typical laptop"
    return (
        f"about {tps(plan.decode_tps)} tokens/s writing, {tps(plan.prompt_tps)} tokens/s reading the "
        f"prompt (predicted from {basis})"
    )


def tps(value: float) -> str:
    """A speed with the digits that mean something: 0.4, 7.5, 23, 1,200."""
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def available(as_json: bool) -> None:
    """`cove list --available`: the catalog with a fit column and predicted speed, best here first."""
    settings = Settings.from_env()
    machine = this_machine(settings.home)
    ranked = fitting.rank(machine, decode_scale=fitting.decode_scale(settings.home, machine))
    planned = {r.entry.name for r in ranked}
    rest = [e for e in catalog.CATALOG if e.name not in planned]  # entries without figures
    if as_json:
        return print_json([r.to_dict() for r in ranked] + [e.to_dict() for e in rest])
    table = Table("NAME", "SIZE", "RAM", "FIT", "SPEED", "LICENSE", "DESCRIPTION", box=None)
    for r in ranked:
        # An embedding model writes no text: a writing speed would mislead.
        speed = "-" if r.entry.kind == "embedding" else f"{tps(r.plan.decode_tps)} tok/s"
        ram = f"{r.plan.memory['total'] / GB:.1f} GB"
        table.add_row(
            r.entry.name, human_size(r.entry.size), ram, r.label, speed, r.entry.license, r.entry.description
        )
    for e in rest:
        table.add_row(e.name, human_size(e.size), f"{e.ram_gb} GB", "?", "?", e.license, e.description)
    out.print(table)
    out.print(
        f"FIT: 'yes' fits in {fitting.PICK_RAM_SHARE:.0%} of the free RAM at "
        f"{fitting.PICK_MIN_DECODE_TPS:.0f}+ tokens/s; 'slow' fits but writes slower; 'tight' takes more "
        "of the free RAM; 'if freed' needs memory other programs hold. SPEED: predicted writing speed."
    )


def check_store(settings: Settings, model: str | None, as_json: bool) -> None:
    """`cove fit --check`: each stored chat or base model loaded once, plan beside measurement."""
    from ..engine import calibration
    from ..library.local import Cove

    # Each model in its own engine process, so its memory is its own to measure.
    with (
        Cove(replace(settings, num_parallel=1, engine="process")) as cove,
        Measurements.of_home(settings.home) as measurements,
    ):
        manifests = [cove.model(model)] if model else [m for m in cove.models() if not m.is_embedding]
        if not manifests:
            raise ModelNotFound("no models in the store to check: `cove pull` one first")

        # The machine described again for each model, before its load and once it is loaded:
        # its load moves between them.
        def now() -> Machine:
            return this_machine(settings.home)

        checks = [calibration.check(cove, m, now(), measurements, now) for m in manifests]
        checks = [
            calibration.rescaled(c, measurements, m.digest) for c, m in zip(checks, manifests, strict=True)
        ]
    if as_json:
        return print_json([c.to_dict() for c in checks])
    table = Table(
        "MODEL", "MEMORY predicted", "measured", "error", "DECODE predicted", "measured", "error", box=None
    )
    for c in checks:
        table.add_row(
            escape(c.model),
            f"{c.predicted_memory / GB:.2f} GB",
            f"{c.measured_memory / GB:.2f} GB",
            f"{c.memory_error:+.0%}",
            f"{tps(c.predicted_decode_tps)} tok/s",
            f"{tps(c.measured_decode_tps)} tok/s",
            f"{c.decode_error:+.0%}",
        )
    out.print(table)
    for c in checks:
        out.print(f"{escape(c.model)} was predicted for {_load(c)}; memory by {c.memory_by}{_spread(c)}")
    out.print(
        "predicted: the memory once loaded, and the decode speed scaled by the other models' "
        "measurements here (this run's too), for the machine as busy as it was just before "
        "each answer; measured: the engine process's peak RSS, and the engine's own tokens/s "
        f"over {calibration.ANSWER_TOKENS} tokens (of {calibration.ANSWERS} answers, the one "
        "whose error is the median), on the threads "
        "planned and without prompt lookup (what that gains depends on the text: "
        "benchmarks/speculative.py). "
        "Each run is recorded: `cove fit` uses it for that model."
    )


def _spread(c: Check) -> str:
    """How far the answers' measured speeds were apart: the machine's noise beside the error."""
    slowest, fastest = c.measured_range
    return f"; the answers measured {tps(slowest)} to {tps(fastest)} tok/s" if fastest else ""


def _load(c: Check) -> str:
    """How busy the machine was when the prediction was made."""
    average = f"load average {c.load_average:.1f}, " if c.load_average is not None else ""
    threads = f"{c.threads} engine thread{'s' if c.threads != 1 else ''}"
    got = f" (each got {c.answer_share:.0%} while it answered)" if c.answer_share else ""
    return f"{average}{threads} at {c.cpu_share:.0%} of a core each{got}"
