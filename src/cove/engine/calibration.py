"""Predicted against measured (`cove fit --check`): load a stored model, answer a fixed prompt,
and set the plan's memory and decode speed beside the engine process's peak RSS and the
engine's own tokens/s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from ..history.measurements import Measurement, Measurements
from ..machine import Machine
from ..store.models import Manifest
from . import fitting, planner
from .base import LoadSpec
from .events import Usage
from .options import context_size

if TYPE_CHECKING:
    from ..library.local import Cove

PROMPT = "Count from one to one hundred in words, separated by commas."
ANSWER_TOKENS = 64
#: The figure reported is the answer with the median error, each predicted for the machine as
#: that answer found it: one short answer on a shared machine swung from 70 to 117 tokens/s
#: between runs a minute apart (smollm2:135m, load 1.7 to 1.9).
ANSWERS = 5
MIN_TIMED_TOKENS = 8


@dataclass(frozen=True)
class Check:
    model: str
    predicted_memory: int
    measured_memory: int
    predicted_decode_tps: float
    measured_decode_tps: float
    measured_tokens: int
    #: The decode factor other models' measurements gave the prediction (1.0: none yet).
    decode_scale: float = 1.0
    #: The planner's own decode figure, before that factor.
    unscaled_decode_tps: float = 0.0
    #: Where the memory prediction came from: llama.cpp's fit of the file, or cove's estimate.
    memory_by: str = "cove's estimate"
    #: How busy the machine was when it predicted: the load average, the share of a core a
    #: thread got (the short copy against the machine's best), and the threads it planned.
    load_average: float | None = None
    cpu_share: float = 1.0
    threads: int = 0
    #: The share of a core each engine thread got while it answered (its CPU time over the
    #: answer's wall time; 0.0: not measured): what the prediction had to foresee.
    answer_share: float = 0.0
    #: The slowest and fastest of the answers' measured speeds: how much the machine moved the
    #: measurement while the check ran ((0, 0): not measured).
    measured_range: tuple[float, float] = (0.0, 0.0)

    @property
    def memory_error(self) -> float:
        """(predicted - measured) / measured: positive when cove over-estimates."""
        return _error(self.predicted_memory, self.measured_memory)

    @property
    def decode_error(self) -> float:
        return _error(self.predicted_decode_tps, self.measured_decode_tps)

    @property
    def decode_error_at_share(self) -> float:
        """The decode error had the prediction known the share of a core the answer got: the
        planner's own error, apart from how other programs' use of the CPU moved meanwhile."""
        if not self.answer_share or not self.cpu_share:
            return self.decode_error
        at_share = self.predicted_decode_tps * self.answer_share / self.cpu_share
        return _error(at_share, self.measured_decode_tps)

    def to_dict(self) -> dict[str, Any]:
        errors = {"memory_error": self.memory_error, "decode_error": self.decode_error}
        return {**asdict(self), **errors, "decode_error_at_share": self.decode_error_at_share}


def _error(predicted: float, measured: float) -> float:
    return round((predicted - measured) / measured, 3) if measured else float("inf")


def check(
    cove: Cove,
    manifest: Manifest,
    machine: Machine,
    measurements: Measurements,
    now: Callable[[], Machine] | None = None,
) -> Check:
    """Plan `manifest` as the library loads it (one slot, its recipe's context, the engine's
    threads), as `cove fit` would for a model it has not run (the decode factor from the other
    models' measurements), then measure, and record the measurement. `machine`: described
    before the load, for the threads the engine gets; `now` describes it again just before
    each answer, so each answer's speed is predicted for the CPU as busy as that answer finds
    it: on a shared machine the others' use moves from one answer to the next (seconds of
    llama.cpp's fit and the load would lie between otherwise). The answer reported is the one
    whose error is the median, with the spread of all the measured speeds beside it."""
    recipe = manifest.recipe_obj()
    num_ctx = context_size(recipe, {}, manifest.info.get("context_length"))
    threads = planner.engine_threads(machine, cove.settings.num_threads or None)
    figures = fitting.manifest_figures(manifest)
    path = cove.store.model_path(manifest)
    figures = fitting.with_llama_fit(figures, path, num_ctx, fits=cove.fits, digest=manifest.digest)
    scale = (
        measurements.decode_efficiency(planner.DECODE_MODEL, besides=manifest.digest, threads=threads) or 1.0
    )
    before = _engine_pids()
    with _answering(cove, threads) as ask:
        ask(manifest, load_only=True)
        engines = _engine_pids() - before
        answers: list[_Answered] = []
        for _ in range(ANSWERS):
            seen = now() if now is not None else machine
            # The answer's own depth: a short prompt and 64 tokens, not a conversation under way.
            plan = planner.plan(
                figures, seen, num_ctx=num_ctx, kv_type="f16", threads=threads, depth=ANSWER_TOKENS
            )
            cpu, wall = _cpu_seconds(engines), time.perf_counter()
            reply = ask(manifest)
            got = (_cpu_seconds(engines) - cpu) / (time.perf_counter() - wall)
            answers.append(_Answered(plan, seen, reply, got))
    peak = sum(_peak_rss(pid) for pid in engines)
    cove.stop(manifest.name)
    speeds = sorted(a.measured_tps for a in answers)
    answer = sorted(answers, key=lambda a: a.error)[len(answers) // 2]
    plan, machine = answer.plan, answer.machine
    measurements.record(
        Measurement(
            model=manifest.name,
            digest=manifest.digest,
            kind="answer",
            num_ctx=num_ctx,
            parallel=1,
            kv_type="f16",
            threads=threads,
            peak_bytes=peak or None,
            predicted_bytes=plan.memory["at_load"],
            decode_tps=answer.measured_tps or None,
            predicted_decode_tps=plan.decode_tps,
            decode_model=planner.DECODE_MODEL,
            prompt_tps=_prompt_tps(answer.reply.usage),
            tokens=answer.reply.completion_tokens,
            load_average=machine.load_average,
        )
    )
    return Check(
        model=manifest.name,
        predicted_memory=plan.memory["at_load"],
        measured_memory=peak,
        predicted_decode_tps=round(plan.decode_tps * scale, 1),
        measured_decode_tps=answer.measured_tps,
        measured_tokens=answer.reply.completion_tokens,
        decode_scale=scale,
        unscaled_decode_tps=plan.decode_tps,
        memory_by=plan.memory_by,
        load_average=machine.load_average,
        cpu_share=round(planner.cpu_share(machine), 2),
        threads=threads,
        answer_share=round(min(1.0, answer.got / threads), 2),
        measured_range=(speeds[0], speeds[-1]),
    )


@dataclass(frozen=True)
class _Answered:
    """One answer of the check: the plan made just before it, for the machine as it was then,
    and the CPU time its engine got per second of the answer."""

    plan: planner.Plan
    machine: Machine
    reply: Any
    got: float

    @property
    def measured_tps(self) -> float:
        return round(self.reply.tokens_per_s or 0.0, 1)

    @property
    def error(self) -> float:
        """The planner's own error on this answer (the decode factor scales every answer's alike)."""
        return _error(self.plan.decode_tps, self.measured_tps)


def rescaled(check: Check, measurements: Measurements, digest: str) -> Check:
    """The check with its decode prediction scaled by what the other models measured, this
    run's answers included: as `cove fit` would predict it now. A fresh store's first model
    has nothing else to go by at its own turn (so its figure would be the planner's alone)."""
    scale = measurements.decode_efficiency(planner.DECODE_MODEL, besides=digest, threads=check.threads) or 1.0
    predicted = round(check.unscaled_decode_tps * scale, 1)
    return replace(check, decode_scale=scale, predicted_decode_tps=predicted)


def _cpu_seconds(pids: set[int]) -> float:
    """CPU time (user and system) the processes have had so far."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@contextmanager
def _answering(cove: Cove, threads: int) -> Iterator[Callable[..., Any]]:
    """Asks the check's question, with the engine on the threads the plan was made for (the
    engine chooses again at load, and on a busy machine its choice can flip between two counts
    in a second, which would set a prediction for one beside a measurement of the other), and
    without prompt lookup: what it gains depends on the text (counting repeats itself), and
    benchmarks/speculative.py measures it; the plan is of plain decoding. `load_only`: load the
    model for that answer and return."""
    settings = cove.settings
    options = {"num_predict": ANSWER_TOKENS, "temperature": 0.0, "draft_ngram": 0}

    def ask(manifest: Manifest, load_only: bool = False) -> Any:
        if load_only:
            request, _, _ = cove.prepare(manifest.name, options)
            with cove.scheduler.use(request):
                return None
        if manifest.info.get("chat_template") or manifest.recipe_obj().template:
            return cove.chat(manifest.name, [{"role": "user", "content": PROMPT}], options=options)
        return cove.generate(manifest.name, PROMPT, options=options)

    # This answer is recorded by check(), with the plan beside it: the library's own record of
    # it would count it twice.
    cove.record_answers = False
    cove.settings = replace(settings, num_threads=threads)
    try:
        yield ask
    finally:
        cove.record_answers = True
        cove.settings = settings


def load_recorder(home: Path) -> Callable[[LoadSpec, Any, int], None]:
    """The scheduler's `on_loaded`: each load's peak memory (its engine process's VmHWM; an
    in-process engine shares this process, whose figure would mix in everything else, so it is
    not recorded) beside what was planned, in COVE_HOME's database."""

    def record(spec: LoadSpec, model: Any, planned: int) -> None:
        pid = getattr(model, "pid", None)  # an engine process's (IsolatedModel)
        peak = _peak_rss(pid) if isinstance(pid, int) else 0
        if not peak:
            return
        with Measurements.of_home(home) as measurements:
            measurements.record(_of_load(spec, "load", peak_bytes=peak, predicted_bytes=planned))

    return record


def answer_recorder(home: Path) -> Callable[[LoadSpec, Usage], None]:
    """Records each answer's speeds (the engine's own timings) for the model that gave it, in
    COVE_HOME's database, opened on the first answer. For the library, after an answer whose
    usage is known: `record(spec, usage)`. Answers too short to time (under 8 tokens) are
    left out: their speed is mostly the first token's."""
    opened: list[Measurements] = []

    def record(spec: LoadSpec, usage: Usage) -> None:
        if usage.completion_tokens < MIN_TIMED_TOKENS or not usage.tokens_per_s:
            return
        if not opened:
            opened.append(Measurements.of_home(home))
        opened[0].record(
            _of_load(
                spec,
                "answer",
                decode_tps=round(usage.tokens_per_s, 1),
                prompt_tps=_prompt_tps(usage),
                tokens=usage.completion_tokens,
                load_average=_load_average(),
            )
        )

    return record


def _of_load(spec: LoadSpec, kind: str, **figures: Any) -> Measurement:
    """A measurement filed under the load that made it: model, file and load settings."""
    return Measurement(
        model=spec.name,
        digest=spec.digest,
        kind=kind,
        num_ctx=spec.num_ctx,
        parallel=spec.num_parallel,
        kv_type=spec.kv_cache_type,
        threads=spec.num_threads or None,
        **figures,
    )


def _load_average() -> float | None:
    try:
        return round(psutil.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _prompt_tps(usage: Usage | None) -> float | None:
    """Prompt tokens the engine read (those it had cached it skipped) per second."""
    if usage is None or not usage.prompt_ms:
        return None
    return round((usage.prompt_tokens - usage.cached_tokens) / usage.prompt_ms * 1000, 1) or None


def _engine_pids() -> set[int]:
    """The engine processes this process started (each model runs in its own)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _peak_rss(pid: int) -> int:
    """The most RAM the process has held (VmHWM on Linux), else what it holds now."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return int(psutil.Process(pid).memory_info().rss)
    except (OSError, psutil.Error, ValueError):
        return 0
