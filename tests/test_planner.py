"""The load planner as a pure function over recorded machine descriptions (tests/machines/*.json)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cove.engine import fitting, planner
from cove.engine.memory import KV_TYPE_BYTES, kv_bytes_per_token
from cove.engine.planner import (
    DOES_NOT_FIT,
    FITS,
    FITS_IF_FREED,
    ModelFigures,
    describe_suggestion,
    engine_threads,
    plan,
)
from cove.errors import ModelNotFound
from cove.machine import Machine
from cove.store import catalog

MACHINES = Path(__file__).parent / "machines"


def machine(name: str) -> Machine:
    return Machine.from_dict(json.loads((MACHINES / f"{name}.json").read_text()))


def figures(name: str) -> ModelFigures:
    entry = catalog.find(name)
    assert entry is not None
    found = fitting.entry_figures(entry)
    assert found is not None
    return found


def test_recorded_descriptions_round_trip() -> None:
    for path in MACHINES.glob("*.json"):
        described = Machine.from_dict(json.loads(path.read_text()))
        assert Machine.from_dict(described.to_dict()) == described


def test_every_catalog_chat_entry_has_figures_and_quant_sizes() -> None:
    for entry in catalog.CATALOG:
        assert entry.arch is not None, entry.name
        assert entry.quant in entry.sizes(), entry.name
        assert entry.sizes()[entry.quant] == entry.size
        for quant in entry.sizes():
            ref = entry.ref_for(quant)
            assert ref == entry.name or ref.endswith(f":{quant}")


def test_every_catalog_size_says_how_it_was_had() -> None:
    for entry in catalog.CATALOG:
        assert entry.to_dict()["size_from"] == entry.size_from, entry.name
        if entry.size_from == catalog.SIZE_EXACT:  # the file cove makes or checks against a digest
            assert not isinstance(entry.source, catalog.HFRepo), entry.name
            continue
        # Model-card figures: rounded to the megabyte, unchecked; a pull or `cove fit hf.co/...`
        # reads the exact size.
        assert entry.size_from == catalog.SIZE_FROM_CARD, entry.name
        assert isinstance(entry.source, catalog.HFRepo), entry.name
        assert all(size % catalog.MB == 0 for size in entry.sizes().values()), entry.name


def test_a_4gb_laptop_cannot_hold_a_7b_and_is_told_to_pick_a_smaller_model() -> None:
    laptop = machine("laptop-4gb")
    p = plan(figures("qwen2.5:7b"), laptop)
    assert p.verdict == DOES_NOT_FIT
    assert p.suggestion == {}  # no smaller quant listed, and even 512 tokens leave no room
    assert describe_suggestion(p) == "try a smaller model"
    assert fitting.pick(laptop)[0] is not None
    chosen = fitting.pick(laptop)[0]
    assert chosen is not None and chosen.plan.params < 1_000_000_000


def test_largest_context_suggested_is_the_largest_that_fits() -> None:
    laptop = machine("laptop-4gb")
    model = figures("llama3.2:3b")
    p = plan(model, laptop)
    assert p.verdict != FITS
    ctx = p.suggestion["num_ctx"]
    assert plan(model, laptop, num_ctx=ctx, kv_type="q8_0").verdict == FITS
    assert plan(model, laptop, num_ctx=ctx + 256, kv_type="q8_0").verdict != FITS
    assert f"num_ctx {ctx}" in describe_suggestion(p)


def test_other_programs_holding_half_the_ram() -> None:
    quiet, busy = machine("desktop-16gb"), machine("desktop-16gb-busy")
    assert busy.ram_used_by_others == busy.ram_total // 2
    model = figures("qwen2.5:14b")
    assert plan(model, quiet).verdict == FITS
    held = plan(model, busy)
    assert held.verdict == FITS_IF_FREED
    assert "other programs hold 8.6 GB" in held.reason
    # Too big for the machine however much is freed.
    assert plan(figures("gemma3:27b"), busy).verdict == DOES_NOT_FIT


def test_smaller_quant_suggested_when_the_asked_one_does_not_fit() -> None:
    desktop = machine("desktop-16gb")
    p = plan(figures("qwen2.5:14b"), desktop, quant="q8_0")
    assert p.quant == "Q8_0" and p.verdict == DOES_NOT_FIT
    assert p.ref == "hf.co/bartowski/Qwen2.5-14B-Instruct-GGUF:Q8_0"
    assert p.suggestion == {"quant": "Q4_K_M", "ref": "qwen2.5:14b"}
    assert plan(figures("qwen2.5:14b"), desktop, quant="Q4_K_M").verdict == FITS
    with pytest.raises(ModelNotFound, match="has no Q2_K file"):
        plan(figures("qwen2.5:14b"), desktop, quant="Q2_K")


def test_kv_cache_in_q8_0_is_the_lever_when_f16_does_not_fit() -> None:
    busy = machine("desktop-16gb-busy")
    model = figures("llama3.1:8b")
    f16 = plan(model, busy, num_ctx=16384, kv_type="f16")
    assert f16.verdict != FITS
    chosen = plan(model, busy, num_ctx=16384)
    assert chosen.verdict == FITS and chosen.kv_type == "q8_0"
    assert any("q8_0" in lever for lever in chosen.levers)
    assert chosen.memory["kv_cache"] == pytest.approx(f16.memory["kv_cache"] * 34 / 64, rel=1e-6)
    # The prompt cache's budget is one slot's context in the load's KV type, as the scheduler sizes it.
    assert chosen.memory["prompt_cache"] < f16.memory["prompt_cache"]


def test_q8_0_kv_takes_34_bytes_per_block_of_32_elements() -> None:
    info = {"block_count": 2, "head_count": 4, "head_count_kv": 2, "embedding_length": 256}
    elements = 2 * 2 * (64 + 64)
    assert kv_bytes_per_token(info) == elements * 2
    assert kv_bytes_per_token(info, "q8_0") == elements * 34 // 32
    assert KV_TYPE_BYTES == {"f16": 2.0, "q8_0": 34 / 32}


def test_the_measured_memory_is_the_load_less_its_empty_prompt_cache() -> None:
    p = plan(figures("llama3.1:8b"), machine("desktop-16gb"), num_ctx=4096)
    assert p.memory["at_load"] == p.memory["total"] - p.memory["prompt_cache"]


def test_fewer_slots_before_a_smaller_kv_cache() -> None:
    busy = machine("desktop-16gb-busy")
    p = plan(figures("llama3.1:8b"), busy, num_ctx=8192, parallel=8)
    assert p.verdict == FITS and p.kv_type == "f16"
    assert 1 <= p.parallel < 8
    assert plan(
        figures("llama3.1:8b"), busy, num_ctx=8192, parallel=p.parallel + 1, kv_type="f16"
    ).parallel == (p.parallel)


def test_a_24gb_gpu_takes_a_32b_whole_and_a_70b_in_part() -> None:
    gpu = machine("workstation-24gb-gpu")
    whole = plan(figures("qwen2.5:32b"), gpu)
    assert whole.verdict == FITS and whole.gpu_layers == whole.layers
    assert whole.memory["vram"] <= gpu.gpus[0].free
    assert whole.memory["ram"] < 2 * 10**9  # only the prompt cache stays in RAM
    part = plan(figures("llama3.3:70b"), gpu)
    assert 0 < part.gpu_layers < part.layers
    assert part.memory["vram"] <= gpu.gpus[0].free
    assert part.decode_tps < whole.decode_tps / 5  # the CPU's share is what holds it up
    chosen, why = fitting.pick(gpu)
    assert chosen is not None and chosen.entry.name == "qwen2.5:32b"
    assert "60%" in why


def test_unified_memory_counts_the_weights_once() -> None:
    mac = machine("mac-m2pro-16gb")
    p = plan(figures("llama3.1:8b"), mac)
    assert p.verdict == FITS and p.gpu_layers == p.layers
    assert p.memory["ram"] == p.memory["total"] and p.memory["vram"] == 0
    # Past the GPU's working set (three quarters of the RAM) it cannot be had, however freed.
    assert plan(figures("mistral-small:24b"), mac).verdict == DOES_NOT_FIT
    cpu_only = replace(mac, gpus=(), unified_memory=False)
    assert plan(figures("llama3.1:8b"), cpu_only).decode_tps < p.decode_tps


def test_decode_speed_follows_bandwidth_and_size() -> None:
    desktop = machine("desktop-16gb")
    small, big = plan(figures("llama3.2:3b"), desktop), plan(figures("llama3.1:8b"), desktop)
    assert small.decode_tps > big.decode_tps
    faster = replace(desktop, bandwidth_gbs=2 * (desktop.bandwidth_gbs or 0))
    assert plan(figures("llama3.1:8b"), faster).decode_tps == pytest.approx(2 * big.decode_tps, rel=0.05)
    assert big.prompt_tps > big.decode_tps


def test_rank_puts_usable_models_first_largest_first() -> None:
    ranked = fitting.rank(machine("desktop-16gb"))
    verdicts = [r.plan.verdict for r in ranked]
    assert verdicts == sorted(verdicts, key=[FITS, FITS_IF_FREED, DOES_NOT_FIT].index)
    usable = [r for r in ranked if r.usable]
    assert usable and ranked[: len(usable)] == usable
    chat = [r.plan.params for r in usable if r.entry.kind == "chat"]
    assert chat == sorted(chat, reverse=True)
    assert all(r.plan.memory["ram"] <= fitting.PICK_RAM_SHARE * r.ram_free for r in usable)
    assert all(r.plan.decode_tps >= fitting.PICK_MIN_DECODE_TPS for r in usable)


def test_pick_with_a_fake_catalog_takes_the_largest_usable() -> None:
    desktop = machine("desktop-16gb")
    arch = catalog.Arch(layers=24, heads=8, kv_heads=8, head_dim=64, embedding=512, context=4096, params=0)
    entries = [
        catalog.CatalogEntry(
            f"fake:{n}",
            catalog.HFRepo(f"hf.co/fake/m{n}-GGUF:Q4_K_M"),
            "",
            size,
            1.0,
            "MIT",
            arch=replace(arch, params=n * 10**9),
            quants={"Q4_K_M": size},
        )
        for n, size in ((1, 600 * catalog.MB), (3, 1800 * catalog.MB), (20, 12_000 * catalog.MB))
    ]
    chosen, _ = fitting.pick(desktop, entries)
    assert chosen is not None and chosen.entry.name == "fake:3"  # fake:20 is too slow and too big
    nothing, why = fitting.pick(machine("laptop-4gb"), entries[2:])
    assert nothing is None and "no catalog chat model fits" in why


def test_fewer_threads_slow_a_compute_bound_model() -> None:
    desktop = machine("desktop-16gb")  # 8 cores; smollm2 is small enough to be arithmetic-bound
    all_cores = plan(figures("smollm2:135m"), desktop)
    one = plan(figures("smollm2:135m"), desktop, threads=1)
    # Slower, but by less than the threads: each layer's small operations take as long on one.
    assert all_cores.decode_tps / 8 < one.decode_tps < all_cores.decode_tps * 0.75
    assert one.prompt_tps == pytest.approx(all_cores.prompt_tps / 8, rel=0.01)
    # A big model is held up by bandwidth, which more threads do not add.
    big = figures("llama3.1:8b")
    assert plan(big, desktop, threads=4).decode_tps == plan(big, desktop).decode_tps


def test_a_pick_on_a_gpu_leaves_room_in_its_memory() -> None:
    gpu = machine("workstation-24gb-gpu")
    small_gpu = replace(gpu, gpus=(replace(gpu.gpus[0], free=int(21.5 * (1 << 30))),))
    ranked = {r.entry.name: r for r in fitting.rank(small_gpu)}
    tight = ranked["qwen2.5:32b"]
    assert tight.plan.fits and tight.plan.memory["vram"] > fitting.PICK_VRAM_SHARE * tight.vram_free
    assert not tight.usable and tight.label == "tight"
    chosen, _ = fitting.pick(small_gpu)
    assert chosen is not None and chosen.entry.name != "qwen2.5:32b"


def test_the_bundled_models_header_agrees_with_its_catalog_figures(real_home: Path) -> None:
    from cove.store.models import ModelStore

    info = ModelStore(real_home).get("gemma3:270m").info
    entry = catalog.find("gemma3:270m")
    assert entry is not None and entry.arch is not None
    shape = entry.arch.info()
    for key in ("block_count", "head_count", "head_count_kv", "key_length", "embedding_length"):
        assert shape[key] == info[key], key
    assert shape["context_length"] == info["context_length"]
    assert abs(shape["parameter_count"] - info["parameter_count"]) < 0.01 * info["parameter_count"]


def test_the_verdict_is_the_best_the_levers_reach() -> None:
    busy = machine("desktop-16gb-busy")
    # 8 slots of 64k context in f16 need far more than 16 GB; one slot in q8_0 would fit
    # once other programs let go of their memory.
    asked = {"num_ctx": 65536, "parallel": 8}
    assert plan(figures("llama3.1:8b"), busy, kv_type="f16", **asked).verdict == DOES_NOT_FIT
    p = plan(figures("llama3.1:8b"), busy, **asked)
    assert p.verdict == FITS_IF_FREED
    assert p.parallel == 1 and p.kv_type == "q8_0"
    assert p.levers == ("1 slot instead of 8", "KV cache in q8_0 (half the memory of f16)")


def test_a_busy_cpu_slows_the_arithmetic_not_the_memory_reads() -> None:
    laptop = machine("laptop-4gb")  # 2 cores without AVX2: a small model is arithmetic-bound there
    quiet, busy = replace(laptop, load_average=0.5), replace(laptop, load_average=3.0)
    small = figures("smollm2:135m")
    assert plan(small, quiet).decode_tps == plan(small, laptop).decode_tps  # quiet: all its cores
    # Three other runnable threads on two cores: the engine gets half of them.
    assert plan(small, busy).decode_tps == pytest.approx(plan(small, quiet).decode_tps / 2, rel=0.02)
    assert plan(small, busy).prompt_tps == pytest.approx(plan(small, quiet).prompt_tps / 2, rel=0.02)
    desktop = machine("desktop-16gb")
    big = figures("llama3.1:8b")  # bandwidth-bound: the measured bandwidth already saw the load
    assert plan(big, replace(desktop, load_average=15.0)).decode_tps == plan(big, desktop).decode_tps


def test_the_free_cpu_measured_now_sets_the_speed_whatever_the_load_average_says() -> None:
    desktop = machine("desktop-16gb")  # 30 GB/s at best
    big = figures("llama3.1:8b")  # bandwidth-bound
    quiet = plan(big, replace(desktop, bandwidth_now_gbs=30.0, load_average=15.0))
    assert quiet.decode_tps == plan(big, desktop).decode_tps  # the copy just now saw no one in its way
    # Other programs took half of what a thread gets: the reads and the arithmetic both slow.
    halved = replace(desktop, bandwidth_now_gbs=15.0, load_average=0.0)
    assert plan(big, halved).decode_tps == pytest.approx(quiet.decode_tps / 2, rel=0.02)
    laptop = machine("laptop-4gb")  # arithmetic-bound for a small model
    small = figures("smollm2:135m")
    shared = replace(laptop, bandwidth_now_gbs=laptop.bandwidth_gbs / 4 if laptop.bandwidth_gbs else 5.0)
    assert plan(small, shared).decode_tps < plan(small, laptop).decode_tps / 3


def test_the_plan_counts_the_threads_the_engine_will_choose() -> None:
    desktop = machine("desktop-16gb")  # 8 physical cores
    assert engine_threads(desktop) == 8  # a recorded machine: idle cores not measured
    busy = replace(desktop, idle_cores=1.1)
    assert engine_threads(busy) == 1 and engine_threads(busy, 3) == 3  # COVE_NUM_THREADS wins
    big = figures("llama3.1:8b")
    assert (
        plan(big, busy).decode_tps == plan(big, desktop, threads=1).decode_tps < plan(big, desktop).decode_tps
    )


def test_the_first_run_rule_follows_what_this_machine_measured() -> None:
    desktop = machine("desktop-16gb")
    chosen, _ = fitting.pick(desktop)
    assert chosen is not None and chosen.usable
    # Answers here came at a tenth of the predicted speed: the big pick would crawl, so a
    # smaller model that still writes 10+ tokens/s at that rate is picked instead.
    slower, _ = fitting.pick(desktop, decode_scale=0.1)
    assert slower is not None and slower.usable
    assert slower.plan.params < chosen.plan.params
    assert slower.plan.decode_tps >= fitting.PICK_MIN_DECODE_TPS


def test_each_layer_adds_its_own_time_to_a_small_models_decode() -> None:
    desktop = replace(machine("desktop-16gb"), thread_share=1.0, bandwidth_now_gbs=30.0)
    small = figures("smollm2:135m")
    deeper = replace(small, info={**small.info, "block_count": 2 * small.layers})
    one, two = plan(small, desktop, threads=1), plan(deeper, desktop, threads=1)
    # The same weights in twice the layers: the per-layer operations make it slower.
    assert two.decode_tps < 0.85 * one.decode_tps


def test_the_cpu_time_the_copy_got_scales_the_whole_decode() -> None:
    desktop = replace(machine("desktop-16gb"), thread_share=1.0, bandwidth_now_gbs=30.0)
    for name in ("smollm2:135m", "llama3.1:8b"):  # arithmetic-bound, bandwidth-bound
        alone = plan(figures(name), desktop, threads=1).decode_tps
        shared = plan(figures(name), replace(desktop, thread_share=0.5), threads=1).decode_tps
        assert shared == pytest.approx(alone / 2, rel=0.03, abs=0.06), name  # to 0.1 tokens/s
    # The copy's rate just now, cut short by the same waits, does not count them again.
    big = figures("llama3.1:8b")
    assert plan(big, replace(desktop, bandwidth_now_gbs=15.0)).decode_tps == plan(big, desktop).decode_tps


def test_a_known_clock_sets_an_avx2_cores_arithmetic() -> None:
    desktop = replace(machine("desktop-16gb"), thread_share=1.0)  # AVX2, clock not recorded
    small = figures("smollm2:135m")  # arithmetic-bound on one thread
    unknown = plan(small, desktop, threads=1).decode_tps
    slow, fast = (plan(small, replace(desktop, cpu_mhz=mhz), threads=1).decode_tps for mhz in (2250, 4500))
    # The figure measured on a 2.25 GHz core; twice the clock does the arithmetic in half the
    # time (the layers' fixed time stays), and without a clock the guess stands.
    assert slow < unknown < fast < 2 * slow
    assert planner.decode_gflops_per_core(replace(desktop, cpu_mhz=2250)) == pytest.approx(22.0)
    assert planner.decode_gflops_per_core(desktop) == planner.DECODE_GFLOPS_PER_CORE["avx2"]
    # AVX-512's figure has no clock of its own measured: it stands whatever the clock.
    intel = replace(desktop, cpu_flags=(*desktop.cpu_flags, "avx512f"), cpu_mhz=2250)
    assert planner.decode_gflops_per_core(intel) == planner.DECODE_GFLOPS_PER_CORE["avx512f"]
