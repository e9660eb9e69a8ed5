"""llama.cpp's own fit (engine/llama_fit.py): its log read into figures, the planner using them
for the load they were made for and cove's estimate otherwise, and the real fit run on the
bundled model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fit_cli import TINY

from cove.cli.main import cli
from cove.engine import fitting, llama_fit, memory
from cove.engine.llama_fit import (
    ENGINE_RUNTIME_BASE,
    ENGINE_RUNTIME_BYTES,
    ENGINE_RUNTIME_PER_TOKEN,
    MIB,
    Fit,
    FitCache,
    engine_runtime,
    parse,
    run_fit,
    scaled,
)
from cove.engine.memory import kv_bytes_per_token
from cove.engine.planner import ModelFigures, plan
from cove.machine import Machine
from cove.store.models import ModelStore

MACHINES = Path(__file__).parent / "machines"

#: What this machine's CPU build logged for gemma3:270m at num_ctx 4096 (trimmed of timestamps).
CPU_LOG = """\
I common_params_fit_impl: getting device memory data for initial parameters:
I common_memory_breakdown_print: | memory breakdown [MiB] | total free self model context compute unacc |
I common_memory_breakdown_print: | - Host | 272 = 222 + 27 + 23 |
I common_memory_breakdown_print: | - CPU_REPACK | 12 = 12 + 0 + 0 |
I common_params_fit_impl: projected to use 272 MiB of host memory vs. 24105 MiB of total host memory
I common_params_fit_impl: will leave 23832 >= 1024 MiB of system memory, no changes needed
I common_fit_params: successfully fit params to free device memory
""".splitlines()

#: A GPU build's lines, in the formats its source prints (device row: total = free + (self =
#: model + context + compute) + unaccounted); figures made up for a 24 GB card. A later table
#: (one of the fit's trials) must not be added in. Runs of spaces are trimmed in both.
GPU_LOG = """\
I common_memory_breakdown_print: | memory breakdown [MiB] | total free self model context compute unacc |
I common_memory_breakdown_print: | - CUDA0 (RTX 4090) | 24080 = 23500 + ( 5400 = 4600 + 512 + 288) + 0 |
I common_memory_breakdown_print: | - Host | 310 = 300 + 0 + 10 |
I common_params_fit_impl: projected to use 5400 MiB of device memory vs. 23500 MiB of free device memory
I common_params_fit_impl: trying to fit one extra layer
I common_memory_breakdown_print: | memory breakdown [MiB] | total free self model context compute unacc |
I common_memory_breakdown_print: | - CUDA0 (RTX 4090) | 24080 = 23500 + ( 9999 = 9999 + 0 + 0) + 0 |
""".splitlines()


def machine(name: str) -> Machine:
    return Machine.from_dict(json.loads((MACHINES / f"{name}.json").read_text()))


def model(fit: Fit | None = None, **info: object) -> ModelFigures:
    shape = {"block_count": 28, "head_count": 16, "head_count_kv": 8, "embedding_length": 2048}
    shape |= {"context_length": 32768, **info}
    return ModelFigures("m:1b", shape, {"Q4_K_M": 1_000_000_000}, fit=fit)


def test_the_cpu_builds_log_gives_every_buffer() -> None:
    fit = parse(CPU_LOG, 4096, 1, "f16")
    assert fit is not None
    assert (fit.weights, fit.kv_cache, fit.compute) == ((222 + 12) * MIB, 27 * MIB, 23 * MIB)
    assert fit.device == 0 and not fit.all_on_device
    assert fit.at_load == fit.weights + fit.kv_cache + fit.compute + ENGINE_RUNTIME_BYTES
    assert fit.matches(4096, 1, "f16") and not fit.matches(8192, 1, "f16")


def test_a_gpu_builds_log_says_what_the_card_would_hold() -> None:
    fit = parse(GPU_LOG, 4096, 1, "f16")
    assert fit is not None
    assert fit.device == 5400 * MIB and fit.device_free == 23500 * MIB and fit.all_on_device
    assert fit.weights == (4600 + 300) * MIB  # the first table only: the trial's 9999 is not added
    assert replace(fit, device_free=6000 * MIB).all_on_device is False  # inside llama.cpp's 1 GiB margin


def test_a_log_without_the_fit_is_no_answer() -> None:
    assert parse(["llama_model_load: error loading model", ""], 4096, 1, "f16") is None
    assert parse([], 4096, 1, "f16") is None


def test_the_plan_uses_the_fit_for_the_load_it_was_run_for() -> None:
    desktop = machine("desktop-16gb")
    fit = Fit(4096, 1, "f16", weights=1_050_000_000, kv_cache=50_000_000, compute=30_000_000)
    estimated, fitted = plan(model(), desktop), plan(model(fit), desktop)
    assert estimated.memory_by == "cove's estimate" and fitted.memory_by == "llama.cpp's fit"
    assert fitted.memory["at_load"] == fit.at_load != estimated.memory["at_load"]
    assert fitted.memory["kv_cache"] == 50_000_000
    # Other settings than the fit's are cove's to estimate.
    other = plan(model(fit), desktop, num_ctx=8192)
    assert other.memory_by == "cove's estimate"
    assert other.memory["at_load"] == plan(model(), desktop, num_ctx=8192).memory["at_load"]
    # A model with a draft loads two files; the fit saw one.
    drafted = model(fit, draft={"block_count": 2})
    assert plan(drafted, desktop).memory_by == "cove's estimate"


def test_on_a_gpu_the_fit_decides_whether_every_layer_goes_there() -> None:
    gpu = machine("workstation-24gb-gpu")
    room = Fit(
        4096, 1, "f16", 1_000_000_000, 50_000_000, 30_000_000, device=1_200_000_000, device_free=20 << 30
    )
    p = plan(model(room), gpu)
    assert p.gpu_layers == p.layers and p.memory["vram"] == 1_200_000_000
    # Told it would not all fit, the plan keeps cove's own layer count (llama.cpp lowers it at load).
    small = replace(gpu, gpus=(replace(gpu.gpus[0], free=1 << 30),))
    tight = replace(room, device_free=room.device + (512 << 20))
    assert 0 < plan(model(tight), small).gpu_layers < p.layers


def test_without_the_engine_the_fit_is_skipped_and_cove_estimates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_model = tmp_path / "x.gguf"
    not_a_model.write_bytes(b"GGUF not really")
    assert run_fit(not_a_model, 4096, timeout=30) is None
    monkeypatch.setattr(llama_fit.subprocess, "Popen", _refuse)
    figures = model()
    fits = FitCache(tmp_path)
    assert fitting.with_llama_fit(figures, not_a_model, None, fits=fits, digest="x") is figures


def test_the_engines_own_memory_grows_with_the_vocabulary(tmp_path: Path) -> None:
    small = tmp_path / "two-tokens.gguf"
    small.write_bytes(TINY)  # a header whose vocabulary is two tokens
    assert engine_runtime(small) == ENGINE_RUNTIME_BASE + 2 * ENGINE_RUNTIME_PER_TOKEN
    # Prompt lookup adds its drafter's table and a whole draft's logits (vocabulary x 4 bytes).
    drafting = engine_runtime(small, draft_ngram=32) - engine_runtime(small)
    assert drafting == memory.NGRAM_TABLE_BYTES + 4 * 2 * 33
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    assert engine_runtime(broken) == ENGINE_RUNTIME_BYTES  # unknown: a large vocabulary's


def _refuse(*_: object, **__: object) -> None:
    raise OSError("no interpreter")


@pytest.mark.model
def test_the_real_fit_runs_on_the_bundled_model_and_the_plan_uses_it(real_home: Path) -> None:
    store = ModelStore(real_home)
    manifest = store.get("gemma3:270m")
    path = store.model_path(manifest)
    fit = run_fit(path, 32768)
    assert fit is not None and fit.matches(32768, 1, "f16")
    # The weights as llama.cpp lays them out: the file's tensors, give or take its repacking.
    assert 0.8 * manifest.size < fit.weights < 1.2 * manifest.size
    # Gemma 3 keeps full-context K and V in one layer of six (the rest see a short window):
    # cove's formula, which counts every layer, is several times too much; the fit knows.
    assert 0 < fit.kv_cache < kv_bytes_per_token(manifest.info) * 32768 / 3
    screen = CliRunner().invoke(
        cli, ["fit", "gemma3:270m", "--ctx", "32768", "--json"], catch_exceptions=False
    )
    shown = json.loads(screen.stdout)["plan"]
    assert shown["memory_by"] == "llama.cpp's fit"
    assert shown["memory"]["kv_cache"] == fit.kv_cache and shown["memory"]["at_load"] == fit.at_load


def test_the_scheduler_s_fits_are_run_once_per_file_and_context_and_kept(tmp_path: Path) -> None:
    runs: list[tuple[int, int, str]] = []

    def run(path: Path, num_ctx: int, parallel: int, kv_type: str, draft_ngram: int = 0) -> Fit | None:
        runs.append((num_ctx, parallel, kv_type))
        return None if path.name == "broken" else Fit(num_ctx, parallel, kv_type, 100, 64, 10, runtime=5)

    cache = FitCache(tmp_path, run)
    first = cache.get(tmp_path / "m", "d1", 4096)
    assert first is not None and first.kv_cache == 64
    assert cache.get(tmp_path / "m", "d1", 4096) == first and runs == [(4096, 1, "f16")]
    assert cache.get(tmp_path / "broken", "d2", 4096) is None
    assert cache.get(tmp_path / "broken", "d2", 4096) is None and len(runs) == 2  # not tried again
    # Another process finds it kept in COVE_HOME; a new context is a new fit.
    again = FitCache(tmp_path, run)
    assert again.get(tmp_path / "m", "d1", 4096) == first and len(runs) == 2
    again.get(tmp_path / "m", "d1", 8192)
    assert runs[-1] == (8192, 1, "f16")
    # Other slots and KV types from the one fit: the KV cache alone grows or shrinks.
    four = scaled(first, 4, "q8_0")
    assert (four.weights, four.compute, four.kv_cache) == (100, 10, int(64 * 4 * 34 / 64))
