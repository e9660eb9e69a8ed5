"""The load plan, as a pure function of a model's figures and a machine's description: quant,
context, slots, KV-cache type, layers on the GPU, the memory it takes (llama.cpp's own fit of
the file where it was run for these settings, else cove's estimate), the speeds it should reach
on the machine as busy as it is, and whether it fits now (in the memory free now: llama.cpp's
fit judges host RAM against the total), fits once other programs free memory, or does not fit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import ModelNotFound
from ..machine import GB, Machine
from .llama_fit import Fit
from .memory import GIB, KV_TYPES, estimate, kv_bytes_per_token, overhead_bytes
from .options import DEFAULT_NUM_CTX
from .threads import choose_threads

FITS, FITS_IF_FREED, DOES_NOT_FIT = "fits", "fits if other programs free memory", "does not fit"
VERDICTS = (FITS, FITS_IF_FREED, DOES_NOT_FIT)
#: Decode reaches this share of the machine's best copy bandwidth: 1.0 on one thread here
#: (gemma3:270m read its 253 MB at 20-21 GB/s a CPU second; the copy's best is 20 to 39).
CPU_DECODE_EFFICIENCY = 1.0
GPU_DECODE_EFFICIENCY = 0.6
#: Bandwidth assumed when none was measured (a dual-channel DDR4 laptop).
DEFAULT_BANDWIDTH_GBS = 20.0
DEFAULT_GPU_BANDWIDTH_GBS = 300.0
#: Sustained GFLOPS per core for a quantized matrix-vector product (decode), by widest SIMD,
#: and the fixed time each layer's ~25 small operations take on top (llama.cpp schedules and
#: runs each on tensors of one token: norms, rope, the KV-cache copy, attention, activations).
#: Measured here (AVX-512, one engine thread, per CPU second so other programs' share of the
#: core is out of it: benchmarks/fit_decode.py): gemma3:270m 78 tokens/s (18 layers, 536
#: MFLOPs), smollm2:135m 124 (30 layers, 269 MFLOPs), which 47 GFLOPS and 78 us a layer give.
#: Arithmetic alone (the figure before) put smollm2 at twice gemma's speed: its 30 layers
#: make it 1.6x. The others are guesses, for a CPU whose clock is not known.
DECODE_GFLOPS_PER_CORE = {"avx512f": 47.0, "avx2": 30.0, "asimddp": 30.0, "": 8.0}
#: The same per GHz of the CPU's clock, where it was measured with it: a core of another speed
#: does the arithmetic in proportion. AVX2 alone: a 2.25 GHz AMD EPYC (Zen 2) decoded
#: gemma3:270m at 36 to 45 and smollm2:135m at 70 to 77 tokens/s on one thread at a full core
#: (benchmarks/fit_decode.py), which 22 GFLOPS and the same layer time give; the guess of 30
#: read them about 30% fast on one thread there (two threads' bandwidth hid it).
DECODE_GFLOPS_PER_GHZ = {"avx2": 22.0 / 2.25}
DECODE_LAYER_S = 78e-6
#: The decode formula's version, kept with each measured answer: raise it when `speeds` changes,
#: so that ratios measured against the old formula do not scale the new one.
DECODE_MODEL = 3
#: A thread starved outright in the sample still gets its turn in time.
MIN_CPU_SHARE = 0.05
#: Prompt processing batches tokens into matrix products, which run closer to peak.
PROMPT_GFLOPS_PER_CORE = {"avx512f": 80.0, "avx2": 40.0, "asimddp": 40.0, "": 10.0}
#: Prompt FLOPs per byte of memory bandwidth a GPU sustains (tensor cores vs Apple's GPUs).
GPU_PROMPT_FLOPS_PER_BYTE = {"apple": 15.0, "": 60.0}
#: Depth at which decode reads the KV cache, for the speed figure: a conversation under way.
TYPICAL_DEPTH = 1024
VRAM_RESERVE = 512 << 20  # the display, the driver and fragmentation
#: What the operating system keeps for itself however many programs are closed.
OS_RESERVE_SHARE, OS_RESERVE_MIN = 0.1, 1 * GIB
MIN_CTX = 512
MAX_CTX = 1 << 24  # past any model's training; keeps the arithmetic in floats' range
CTX_STEP = 256
#: Bits per weight of common quants, for a quant whose file size is not known.
BITS_PER_WEIGHT = {"Q2_K": 3.35, "Q3_K_M": 3.9, "Q4_0": 4.55, "Q4_1": 5.0, "Q4_K_M": 4.85}
BITS_PER_WEIGHT |= {"Q5_K_M": 5.7, "Q6_K": 6.6, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0}


@dataclass(frozen=True)
class ModelFigures:
    """What the planner knows of a model before (or after) it is on disk."""

    name: str
    #: The GGUF summary's shape keys (block_count, head_count_kv, key_length, ...).
    info: dict[str, Any]
    #: Quant → bytes of its GGUF; the first is the one a plain reference means.
    quants: dict[str, int]
    #: What to pull or load for each quant ("hf.co/…:Q8_0"); missing: the name itself.
    refs: dict[str, str] = field(default_factory=dict)
    #: llama.cpp's own fit of the default quant's file for one load's settings (llama_fit.py),
    #: when the file is here to run it on; the plan uses it for those settings.
    fit: Fit | None = None
    #: The prompt lookup it loads with (engine/speculative.py; 0: none): its tables take memory.
    draft_ngram: int = 0

    @property
    def default_quant(self) -> str:
        return next(iter(self.quants))

    @property
    def layers(self) -> int:
        return int(self.info.get("block_count") or 32)

    @property
    def trained_context(self) -> int | None:
        value = self.info.get("context_length")
        return int(value) if value else None

    def params(self, quant: str) -> int:
        """Parameters from the header, else from the file size and the quant's bits per weight."""
        known = self.info.get("parameter_count")
        if known:
            return int(known)
        return int(self.quants[quant] * 8 / BITS_PER_WEIGHT.get(quant.upper(), 5.0))


@dataclass(frozen=True)
class Plan:
    model: str
    quant: str
    ref: str
    weights: int
    num_ctx: int
    parallel: int
    kv_type: str
    layers: int
    gpu_layers: int
    #: Bytes: weights, kv_cache, prompt_cache, overhead, total; ram and vram are where they go.
    memory: dict[str, int]
    decode_tps: float
    prompt_tps: float
    verdict: str
    reason: str
    #: A way to fit when it does not: {"num_ctx": N} or {"quant": Q, "ref": ...}.
    suggestion: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    #: The context the model was trained for (a longer num_ctx answers worse), if known.
    trained_ctx: int | None = None
    #: Why each lever was pulled ("1 slot instead of 8", "KV cache in q8_0").
    levers: tuple[str, ...] = ()
    #: Where the memory figures come from: llama.cpp's fit of the file, or cove's estimate.
    memory_by: str = "cove's estimate"

    @property
    def fits(self) -> bool:
        return self.verdict == FITS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["levers"] = list(self.levers)
        return data


@dataclass(frozen=True)
class _Layout:
    """Where one configuration's bytes go."""

    ram: int
    vram: int
    gpu_layers: int
    memory: dict[str, int]


def plan(
    model: ModelFigures,
    machine: Machine,
    *,
    num_ctx: int | None = None,
    quant: str | None = None,
    parallel: int = 1,
    kv_type: str | None = None,
    threads: int | None = None,
    decode_scale: float = 1.0,
    depth: int | None = None,
) -> Plan:
    """The plan for `model` on `machine`: the asked settings, with fewer slots and then a q8_0
    KV cache if that is what it takes to fit now; a suggestion when even that does not fit.
    `threads`: the engine's CPU threads (default: what the engine chooses at load, see
    engine_threads).
    `decode_scale`: measured over predicted decode speed on this machine (its measurements).
    `depth`: tokens in the context while it writes (default: a conversation under way)."""
    quant = _pick_quant(model, quant)
    ctx = num_ctx or default_ctx(model)
    levers: list[str] = []
    slots, kv = _lightest_that_fits(model, machine, quant, ctx, max(parallel, 1), kv_type)
    if slots < parallel:
        levers.append(f"{slots} slot{'s' if slots > 1 else ''} instead of {parallel}")
    if kv != (kv_type or "f16"):
        levers.append(f"KV cache in {kv} (half the memory of f16)")
    layout = _layout(model, machine, quant, ctx, slots, kv)
    verdict, reason = _verdict(layout, machine)
    machine = replace(machine, physical_cores=engine_threads(machine, threads))
    result = _build(model, machine, quant, ctx, slots, kv, layout, verdict, reason, tuple(levers))
    if depth is not None:
        decode = speeds(model, machine, quant, layout.gpu_layers, kv, depth)[0]
        result = replace(result, decode_tps=decode)
    if decode_scale != 1.0:
        result = replace(result, decode_tps=round(result.decode_tps * decode_scale, 1))
    if verdict != FITS:
        result = replace(result, suggestion=suggest(model, machine, quant, ctx))
    return result


def _lightest_that_fits(
    model: ModelFigures, machine: Machine, quant: str, ctx: int, parallel: int, kv_type: str | None
) -> tuple[int, str]:
    """The first configuration, in lever order, that fits now; else the first that would fit
    once memory is freed; else the one asked for."""
    freed = None
    for slots, kv in _configurations(parallel, kv_type):
        verdict = _verdict(_layout(model, machine, quant, ctx, slots, kv), machine)[0]
        if verdict == FITS:
            return slots, kv
        if verdict == FITS_IF_FREED and freed is None:
            freed = (slots, kv)
    return freed or (parallel, kv_type or "f16")


def _pick_quant(model: ModelFigures, quant: str | None) -> str:
    if quant is None:
        return model.default_quant
    found = next((q for q in model.quants if q.upper() == quant.upper()), None)
    if found is None:
        have = ", ".join(model.quants)
        raise ModelNotFound(f"{model.name} has no {quant} file (it has {have})")
    return found


def default_ctx(model: ModelFigures) -> int:
    """The context a plan uses unless asked: cove's default, or the model's own if smaller."""
    trained = model.trained_context
    return min(DEFAULT_NUM_CTX, trained) if trained else DEFAULT_NUM_CTX


def _configurations(parallel: int, kv_type: str | None) -> list[tuple[int, str]]:
    """Levers in the order they cost the user least: slots first, then a q8_0 KV cache."""
    kinds = [kv_type] if kv_type else list(KV_TYPES)
    return [(slots, kv) for kv in kinds for slots in range(parallel, 0, -1)]


def _fit_for(model: ModelFigures, quant: str, ctx: int, slots: int, kv: str) -> Fit | None:
    """llama.cpp's fit when it was run for exactly this load; other settings are cove's to estimate."""
    fit = model.fit
    if fit is None or "draft" in model.info:  # the fit saw the main file alone
        return None
    return fit if quant == model.default_quant and fit.matches(ctx, slots, kv) else None


def _layout(model: ModelFigures, machine: Machine, quant: str, ctx: int, slots: int, kv: str) -> _Layout:
    weights = model.quants[quant]
    # The scheduler sizes a load the same way (memory.estimate): the prompt cache's budget is
    # one slot's context in the load's KV type.
    need = estimate(model.info, weights, ctx, slots, kv_type=kv, draft_ngram=model.draft_ngram)
    fit = _fit_for(model, quant, ctx, slots, kv)
    if fit is not None:  # what llama.cpp will allocate, and the engine process around it
        need = replace(need, weights=fit.weights, kv_cache=fit.kv_cache, overhead=fit.compute + fit.runtime)
    kv_cache = need.kv_cache
    memory = {
        "weights": need.weights,
        "kv_cache": kv_cache,
        "prompt_cache": need.prompt_cache,
        "overhead": need.overhead,
        "total": need.total,
        # What a fresh load holds (what `cove fit --check` measures); total is the ceiling.
        "at_load": need.at_load,
    }
    gpu_layers = _gpu_layers(model, machine, weights, kv_cache)
    share = gpu_layers / model.layers
    # On the GPU: its share of the weights and KV cache, and the compute buffers. The prompt
    # cache stays in host RAM. Unified memory counts everything in RAM (the GPU works there).
    vram = int((weights + kv_cache) * share) + (need.overhead if gpu_layers else 0)
    if fit is not None and fit.all_on_device and not machine.unified_memory:
        # llama.cpp found every layer fits with its margin: it offloads them all, and says how much.
        gpu_layers, vram = model.layers, fit.device
    ram = memory["total"] - vram
    if machine.unified_memory:
        ram, vram = memory["total"], 0
    return _Layout(ram, vram, gpu_layers, {**memory, "ram": ram, "vram": vram})


def _gpu_layers(model: ModelFigures, machine: Machine, weights: int, kv_cache: int) -> int:
    """Layers that go on the GPU: all of them with unified memory, else as many as its free
    memory holds after the reserve and the compute buffers."""
    if not machine.gpus:
        return 0
    if machine.unified_memory:
        return model.layers
    free = max(g.free for g in machine.gpus) - VRAM_RESERVE - overhead_bytes(weights)
    per_layer = (weights + kv_cache) / model.layers
    return max(0, min(model.layers, int(free // per_layer))) if free > 0 else 0


def os_reserve(machine: Machine) -> int:
    return max(OS_RESERVE_MIN, int(machine.ram_total * OS_RESERVE_SHARE))


def _verdict(layout: _Layout, machine: Machine) -> tuple[str, str]:
    ram_free, ceiling = machine.ram_available, machine.ram_total - os_reserve(machine)
    if machine.unified_memory and machine.gpus:
        # Metal lets the GPU use only its working set (the device's total) of the shared RAM.
        ram_free = min(ram_free, max(g.free for g in machine.gpus))
        ceiling = min(ceiling, max(g.total for g in machine.gpus))
    need = f"{layout.ram / GB:.1f} GB of RAM"
    if layout.vram:
        need += f" and {layout.vram / GB:.1f} GB on the GPU"
    if layout.ram <= ram_free:
        return FITS, f"needs {need}; {ram_free / GB:.1f} GB of RAM is free"
    if layout.ram <= ceiling:
        others = machine.ram_used_by_others / GB
        return FITS_IF_FREED, (
            f"needs {need} but {ram_free / GB:.1f} GB is free; other programs hold {others:.1f} GB"
        )
    return DOES_NOT_FIT, f"needs {need}; this machine has {machine.ram_total / GB:.1f} GB in all"


def _build(
    model: ModelFigures,
    machine: Machine,
    quant: str,
    ctx: int,
    slots: int,
    kv: str,
    layout: _Layout,
    verdict: str,
    reason: str,
    levers: tuple[str, ...],
) -> Plan:
    decode, prompt = speeds(model, machine, quant, layout.gpu_layers, kv)
    fitted = _fit_for(model, quant, ctx, slots, kv) is not None
    return Plan(
        model=model.name,
        quant=quant,
        ref=model.refs.get(quant, model.name),
        weights=model.quants[quant],
        num_ctx=ctx,
        parallel=slots,
        kv_type=kv,
        layers=model.layers,
        gpu_layers=layout.gpu_layers,
        memory=layout.memory,
        decode_tps=decode,
        prompt_tps=prompt,
        verdict=verdict,
        reason=reason,
        params=model.params(quant),
        trained_ctx=model.trained_context,
        levers=levers,
        memory_by="llama.cpp's fit" if fitted else "cove's estimate",
    )


# -- speeds ---------------------------------------------------------------------------------


def decode_gflops_per_core(machine: Machine) -> float:
    """One core's arithmetic in a decode step: by its clock where cove has a figure per GHz for
    its instructions and the clock is known, else the figure for its instructions alone."""
    simd = _simd(machine)
    per_ghz = DECODE_GFLOPS_PER_GHZ.get(simd)
    if per_ghz and machine.cpu_mhz:
        return per_ghz * machine.cpu_mhz / 1000
    return DECODE_GFLOPS_PER_CORE[simd]


def _simd(machine: Machine) -> str:
    return next((f for f in ("avx512f", "avx2", "asimddp") if f in machine.cpu_flags), "")


def engine_threads(machine: Machine, requested: int | None = None) -> int:
    """The threads the engine will run with: `requested` (COVE_NUM_THREADS), else what it
    chooses at load (engine/threads.py) from the cores idle now; the physical cores when the
    machine's idle cores were not measured (a recorded description)."""
    if requested:
        return requested
    if machine.idle_cores is None:
        return machine.physical_cores
    return choose_threads(0, machine.idle_cores, machine.physical_cores).count


def cpu_share(machine: Machine) -> float:
    """The share of a core each engine thread can expect now. Measured where it can be: the
    CPU time the short copy just now got over its wall time (Machine.cpu_share). Else from
    the load average: other programs' runnable threads take their turns on the same cores.
    1.0 when nothing is known."""
    measured = machine.cpu_share
    if measured is not None:
        return max(measured, MIN_CPU_SHARE)
    if machine.load_average is None:
        return 1.0
    return min(1.0, machine.logical_cores / (machine.load_average + 1))


def _now_bandwidth(machine: Machine) -> float:
    """RAM bandwidth an engine thread reads at while it has its core (GB/s): the machine's
    best. Not the copy's rate just now: under other programs a copy is cut short by waits
    for its core too (64 MB copies take a few ms, a scheduler's turn as long), so the rate
    would count again what cpu_share() counts. Here the rate just now went from 9 to 39 GB/s
    in minutes while gemma3:270m read its weights at 15 to 21 GB/s a CPU second."""
    return machine.bandwidth_gbs or machine.bandwidth_now_gbs or DEFAULT_BANDWIDTH_GBS


def _gpu_bandwidth(machine: Machine) -> float:
    known = [g.bandwidth_gbs for g in machine.gpus if g.bandwidth_gbs]
    return max(known) if known else DEFAULT_GPU_BANDWIDTH_GBS


def speeds(
    model: ModelFigures, machine: Machine, quant: str, gpu_layers: int, kv: str, depth: int = TYPICAL_DEPTH
) -> tuple[float, float]:
    """Predicted (decode, prompt) tokens/s.

    Decode reads every weight once per token (and the KV cache so far), so its time is bytes
    over bandwidth, on each device for its share; a small model can instead be held up by the
    arithmetic (2 FLOPs a parameter), whichever is slower; on the CPU each layer's small
    operations add a fixed time besides (DECODE_LAYER_S). Prompt processing is arithmetic.
    `machine.physical_cores` counts the engine's threads here (plan() sets it). On the CPU
    it is for the machine as busy as it is now: all of it runs in the cpu_share() of a core
    each thread gets.
    """
    share = gpu_layers / model.layers
    params = model.params(quant)
    kv_read = kv_bytes_per_token(model.info, kv) * depth
    read = model.quants[quant] + kv_read
    cpu_bw = _now_bandwidth(machine) * GB * CPU_DECODE_EFFICIENCY
    cpu_flops = machine.physical_cores * decode_gflops_per_core(machine) * 1e9
    on_core = max(read / cpu_bw, 2 * params / cpu_flops) + model.layers * DECODE_LAYER_S
    cpu_time = (1 - share) * on_core / cpu_share(machine)
    cores = machine.physical_cores * cpu_share(machine)
    gpu_time = share * read / (_gpu_bandwidth(machine) * GB * GPU_DECODE_EFFICIENCY)
    decode = 1 / (cpu_time + gpu_time)
    cpu_prompt = cores * PROMPT_GFLOPS_PER_CORE[_simd(machine)] * 1e9
    apple = any("apple" in g.description.lower() for g in machine.gpus)
    gpu_prompt = _gpu_bandwidth(machine) * GB * GPU_PROMPT_FLOPS_PER_BYTE["apple" if apple else ""]
    prompt_time = (1 - share) * 2 * params / cpu_prompt + share * 2 * params / gpu_prompt
    return round(decode, 1), round(1 / prompt_time, 1)


# -- what would fit -------------------------------------------------------------------------


def suggest(model: ModelFigures, machine: Machine, quant: str, ctx: int) -> dict[str, Any]:
    """The smallest quant that fits at this context, else the largest context that fits (one
    slot, q8_0 KV cache); empty when nothing does."""
    smaller = sorted(
        (q for q in model.quants if model.quants[q] < model.quants[quant]), key=lambda q: model.quants[q]
    )
    for candidate in smaller:
        if _fits(model, machine, candidate, ctx):
            return {"quant": candidate, "ref": model.refs.get(candidate, model.name)}
    best = 0
    low, high = MIN_CTX // CTX_STEP, ctx // CTX_STEP  # in steps; fitting shrinks as ctx grows
    while low <= high:
        middle = (low + high) // 2
        if _fits(model, machine, quant, middle * CTX_STEP):
            best, low = middle * CTX_STEP, middle + 1
        else:
            high = middle - 1
    return {"num_ctx": best} if best else {}


def _fits(model: ModelFigures, machine: Machine, quant: str, ctx: int) -> bool:
    return _verdict(_layout(model, machine, quant, ctx, 1, "q8_0"), machine)[0] == FITS


def describe_suggestion(plan: Plan) -> str:
    """The suggestion in words, for the CLI."""
    if "quant" in plan.suggestion:
        return f"the {plan.suggestion['quant']} file would fit: {plan.suggestion['ref']}"
    if "num_ctx" in plan.suggestion:
        return f"num_ctx {plan.suggestion['num_ctx']} would fit (with a q8_0 KV cache)"
    return "try a smaller model"
