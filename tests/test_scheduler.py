"""Tests for the scheduler on the fake engine, a fake clock and a fake free-memory figure."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine

from cove.engine.base import LoadSpec
from cove.engine.llama_fit import Fit, scaled
from cove.engine.memory import (
    GIB,
    KV_TYPES,
    MIB,
    PROMPT_CACHE_CAP,
    estimate,
    kv_bytes_per_token,
    overhead_bytes,
    process_limit,
    prompt_cache_mib,
)
from cove.engine.scheduler import ModelRequest, Scheduler
from cove.errors import Busy, Cancelled, DoesNotFit

#: A small transformer's shape: 1 layer, 1 head of 64 -> 256 bytes of KV cache per token.
INFO: dict[str, Any] = {"block_count": 1, "head_count": 1, "embedding_length": 64}
WEIGHTS = 10_000_000
WAIT = 10.0  # bound on waiting for another thread, so a bug fails instead of hanging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Memory:
    def __init__(self) -> None:
        self.free = 64 * GIB

    def __call__(self) -> int:
        return self.free


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory() -> Memory:
    return Memory()


SchedulerFactory = Callable[..., Scheduler]


@pytest.fixture
def make(engine: FakeEngine, clock: Clock, memory: Memory) -> Iterator[SchedulerFactory]:
    made: list[Scheduler] = []

    def factory(**kwargs: Any) -> Scheduler:
        scheduler = Scheduler(engine, free_memory=memory, clock=clock, **kwargs)
        # Expiry is driven by the test through unload_expired, not by the background reaper.
        scheduler._start_reaper = lambda: None  # type: ignore[method-assign]
        made.append(scheduler)
        return scheduler

    yield factory
    for scheduler in made:
        scheduler.close()


def request(name: str = "a", num_ctx: int = 256, digest: str | None = None) -> ModelRequest:
    spec = LoadSpec(
        name=f"{name}:latest", model_path=Path(f"/models/{name}"), digest=digest or name * 8, num_ctx=num_ctx
    )
    return ModelRequest(spec, INFO, WEIGHTS)


def replace_spec(req: ModelRequest, **changes: Any) -> ModelRequest:
    return ModelRequest(replace(req.spec, **changes), req.info, req.weights)


def loaded_names(scheduler: Scheduler) -> list[str]:
    return sorted(r.spec.name for r in scheduler.loaded())


def closed_names(engine: FakeEngine) -> list[str]:
    return [spec.name for spec in engine.closed]


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to reach a state; fail (not hang) if it never does."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the other thread never got there")


def use(scheduler: Scheduler, req: ModelRequest, keep_alive: float | None = None) -> Any:
    with scheduler.use(req, keep_alive) as model:
        return model


# -- loading and keep-alive ------------------------------------------------------------------


def test_loads_once_and_reuses(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make()
    first = use(scheduler, request("a"))
    second = use(scheduler, request("a"))
    assert first is second
    assert [spec.name for spec in engine.loads] == ["a:latest"]
    assert engine.closed == []


def test_keep_alive_expiry_unloads(make: SchedulerFactory, engine: FakeEngine, clock: Clock) -> None:
    scheduler = make()
    use(scheduler, request("a"), keep_alive=10)
    clock.now += 9.5
    assert scheduler.unload_expired() == []
    assert loaded_names(scheduler) == ["a:latest"]
    clock.now += 0.5
    assert scheduler.unload_expired() == ["a:latest"]
    assert loaded_names(scheduler) == []
    assert closed_names(engine) == ["a:latest"]


def test_default_keep_alive_comes_from_settings(
    make: SchedulerFactory, engine: FakeEngine, clock: Clock
) -> None:
    scheduler = make(keep_alive_s=60)
    use(scheduler, request("a"))
    clock.now += 59
    assert scheduler.unload_expired() == []
    clock.now += 1
    assert scheduler.unload_expired() == ["a:latest"]


def test_keep_alive_zero_unloads_right_after(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make()
    use(scheduler, request("a"), keep_alive=0)
    assert loaded_names(scheduler) == []
    assert closed_names(engine) == ["a:latest"]


def test_negative_keep_alive_keeps_forever(make: SchedulerFactory, engine: FakeEngine, clock: Clock) -> None:
    scheduler = make()
    use(scheduler, request("a"), keep_alive=-1)
    clock.now += 10**9
    assert scheduler.unload_expired() == []
    assert loaded_names(scheduler) == ["a:latest"]
    assert engine.closed == []


def test_busy_model_never_expires(make: SchedulerFactory, engine: FakeEngine, clock: Clock) -> None:
    scheduler = make()
    with scheduler.use(request("a"), keep_alive=1):
        clock.now += 1000
        assert scheduler.unload_expired() == []
    assert loaded_names(scheduler) == ["a:latest"]  # the clock starts once the request ends
    clock.now += 1
    assert scheduler.unload_expired() == ["a:latest"]


def test_max_loaded_evicts_least_recently_used(
    make: SchedulerFactory, engine: FakeEngine, clock: Clock
) -> None:
    scheduler = make(max_loaded=2)
    use(scheduler, request("a"))
    clock.now += 1
    use(scheduler, request("b"))
    clock.now += 1
    use(scheduler, request("a"))  # a is now the more recently used
    clock.now += 1
    use(scheduler, request("c"))
    assert loaded_names(scheduler) == ["a:latest", "c:latest"]
    assert closed_names(engine) == ["b:latest"]


def test_busy_model_is_not_evicted(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make(max_loaded=1)
    results: list[Any] = []
    with scheduler.use(request("a")):
        waiter = threading.Thread(target=lambda: results.append(use(scheduler, request("b"))))
        waiter.start()
        wait_until(lambda: scheduler.queue_depth() == 1)  # b waits for room
        assert loaded_names(scheduler) == ["a:latest"]
        assert engine.closed == []
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert loaded_names(scheduler) == ["b:latest"]
    assert closed_names(engine) == ["a:latest"]
    assert len(results) == 1


def test_new_context_size_replaces_idle_model(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make(max_loaded=3)
    use(scheduler, request("a", num_ctx=256))
    use(scheduler, request("a", num_ctx=512))
    assert [spec.num_ctx for spec in engine.loads] == [256, 512]
    assert [r.spec.num_ctx for r in scheduler.loaded()] == [512]
    assert closed_names(engine) == ["a:latest"]


def test_stop_and_close_unload(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make(max_loaded=3)
    use(scheduler, request("a"))
    use(scheduler, request("b"))
    assert scheduler.stop("a:latest") is True
    assert scheduler.stop("a:latest") is False
    assert scheduler.stop("nothing:latest") is False
    assert loaded_names(scheduler) == ["b:latest"]
    scheduler.close()
    assert loaded_names(scheduler) == []
    assert sorted(closed_names(engine)) == ["a:latest", "b:latest"]


# -- memory ----------------------------------------------------------------------------------


def test_does_not_fit_suggests_a_context_that_does(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=1, kv_types=KV_TYPES)
    big = request("a", num_ctx=1_000_000)
    memory.free = estimate(INFO, WEIGHTS, 8192, 1).total + 100
    with pytest.raises(DoesNotFit) as info:
        use(scheduler, big)
    message = str(info.value)
    assert "\n" not in message
    found = re.search(r"num_ctx (\d+) would fit", message)
    assert found, message
    suggested = int(found.group(1))
    # Past the 8192 an f16 cache allows: the advice counts the q8_0 lever (34/64 of the bytes).
    assert 8192 < suggested <= 8192 * 64 // 34
    assert engine.loads == []
    assert scheduler.loaded() == []
    # Taking the advice works with the same free memory, with the KV cache in q8_0.
    use(scheduler, request("a", num_ctx=suggested))
    assert engine.loads[-1].num_ctx == suggested
    assert engine.loads[-1].kv_cache_type == "q8_0"


def test_fewer_slots_then_a_q8_0_kv_cache_then_does_not_fit(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=4, kv_types=KV_TYPES)
    memory.free = estimate(INFO, WEIGHTS, 8192, 2).total
    use(scheduler, request("a", num_ctx=8192))
    assert (engine.loads[-1].num_parallel, engine.loads[-1].kv_cache_type) == (2, "f16")
    scheduler.close()
    scheduler = make(num_parallel=4, kv_types=KV_TYPES)
    memory.free = estimate(INFO, WEIGHTS, 8192, 1, kv_type="q8_0").total
    use(scheduler, request("b", num_ctx=8192))
    load = engine.loads[-1]
    assert (load.num_parallel, load.kv_cache_type) == (1, "q8_0")
    assert load.cache_ram_mib * MIB >= kv_bytes_per_token(INFO, "q8_0") * 8192
    assert scheduler.loaded()[0].size == estimate(INFO, WEIGHTS, 8192, 1, kv_type="q8_0").total
    # A model that asks for f16 keeps it: it does not fit rather than being changed.
    with pytest.raises(DoesNotFit, match="needs"):
        use(scheduler, replace_spec(request("c", num_ctx=8192), kv_type="f16"))


def test_q8_0_is_never_planned_for_an_engine_that_does_not_honour_it(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=1)  # the default: f16 only, until the engine sets cache_type_k/v
    memory.free = estimate(INFO, WEIGHTS, 8192, 1, kv_type="q8_0").total
    with pytest.raises(DoesNotFit, match="needs"):
        use(scheduler, request("a", num_ctx=8192))
    with pytest.raises(DoesNotFit, match="needs"):  # asked for, it is still planned as allocated
        use(scheduler, replace_spec(request("a", num_ctx=8192), kv_type="q8_0"))
    assert engine.loads == []


def test_an_idle_model_is_unloaded_to_make_room(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=1, max_loaded=4)
    need = estimate(INFO, WEIGHTS, 8192, 1).total
    # The system counts what loaded models hold as used: room for one of them, not two.
    total = need + need // 2
    scheduler._free_memory = lambda: total - sum(r.size for r in scheduler._runners.values())
    use(scheduler, request("a", num_ctx=8192))
    use(scheduler, request("b", num_ctx=8192))
    assert loaded_names(scheduler) == ["b:latest"]
    assert closed_names(engine) == ["a:latest"]
    # One in use is not unloaded: the next load does not fit, and says so.
    with scheduler.use(request("b", num_ctx=8192)), pytest.raises(DoesNotFit, match="is free"):
        use(scheduler, request("c", num_ctx=8192))


def test_a_load_under_way_counts_against_the_next_plan(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=1, max_loaded=4)
    need = estimate(INFO, WEIGHTS, 8192, 1).total
    memory.free = need + need // 2  # room for one, not two
    first = request("a", num_ctx=8192)
    with scheduler._cond:
        scheduler._make_room(first)  # planned, not yet allocated by its engine
        with pytest.raises(DoesNotFit):
            scheduler._make_room(request("b", num_ctx=8192))


def test_does_not_fit_at_all_suggests_a_smaller_model(make: SchedulerFactory, memory: Memory) -> None:
    scheduler = make()
    memory.free = WEIGHTS // 2
    with pytest.raises(DoesNotFit, match="smaller"):
        use(scheduler, request("a"))


def test_parallel_slots_reduced_to_what_fits(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=8)
    memory.free = estimate(INFO, WEIGHTS, 2048, 3).total + kv_bytes_per_token(INFO) * 100
    use(scheduler, request("a", num_ctx=2048))
    assert engine.loads[-1].num_parallel == 3
    assert scheduler.loaded()[0].size == estimate(INFO, WEIGHTS, 2048, 3).total


def test_all_slots_when_memory_is_plenty(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make(num_parallel=4)
    use(scheduler, request("a"))
    assert engine.loads[-1].num_parallel == 4


# -- queueing --------------------------------------------------------------------------------


def test_queue_bound_busy_and_cancel(make: SchedulerFactory, engine: FakeEngine) -> None:
    scheduler = make(num_parallel=1, max_queue=1)
    release = threading.Event()
    holding = threading.Event()
    outcomes: dict[str, Any] = {}

    def hold() -> None:
        with scheduler.use(request("a")):
            holding.set()
            release.wait(WAIT)

    cancel = threading.Event()

    def queued() -> None:
        try:
            with scheduler.use(request("a"), cancel=cancel):
                outcomes["queued"] = "ran"
        except Cancelled as exc:
            outcomes["queued"] = exc

    first = threading.Thread(target=hold)
    first.start()
    assert holding.wait(WAIT)
    second = threading.Thread(target=queued)
    second.start()
    wait_until(lambda: scheduler.queue_depth() == 1)  # waiting for the one slot

    with pytest.raises(Busy) as info:
        use(scheduler, request("a"))
    assert "a:latest" in str(info.value)

    cancel.set()
    second.join(WAIT)
    assert isinstance(outcomes["queued"], Cancelled)
    assert scheduler.queue_depth() == 0

    release.set()
    first.join(WAIT)
    assert scheduler.loaded()[0].active == 0
    use(scheduler, request("a"))  # the slot is free again
    assert len(engine.loads) == 1


def test_queued_request_runs_when_slot_frees(make: SchedulerFactory) -> None:
    scheduler = make(num_parallel=1, max_queue=4)
    ran: list[str] = []
    with scheduler.use(request("a")):
        waiter = threading.Thread(target=lambda: ran.append(type(use(scheduler, request("a"))).__name__))
        waiter.start()
        wait_until(lambda: scheduler.queue_depth() == 1)
        assert ran == []
    waiter.join(WAIT)
    assert ran == ["FakeModel"]


def test_parallel_slots_run_together(make: SchedulerFactory) -> None:
    scheduler = make(num_parallel=2, max_queue=1)
    both_in = threading.Barrier(2, timeout=WAIT)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with scheduler.use(request("a")):
                both_in.wait()  # only passes if two requests hold slots at once
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []


# -- what the engine process may hold ----------------------------------------------------------


def test_the_prompt_cache_is_capped_to_the_model_and_counted(
    make: SchedulerFactory, engine: FakeEngine
) -> None:
    """llama.cpp keeps evicted prompts in up to 8 GiB of host RAM by default, whatever the model:
    cove caps it at one slot's context of KV cache, and counts it in the size it reports."""
    scheduler = make(num_parallel=2)
    use(scheduler, request("a", num_ctx=8192))
    (spec,) = engine.loads
    one_slot = kv_bytes_per_token(INFO) * 8192
    assert spec.cache_ram_mib * MIB == one_slot  # 2 MiB here, not 8192
    (runner,) = scheduler.loaded()
    assert runner.size == WEIGHTS + 2 * one_slot + one_slot + overhead_bytes(WEIGHTS)
    assert spec.memory_limit == process_limit(estimate(INFO, WEIGHTS, 8192, 2))
    assert spec.memory_limit > 2 * runner.size


def test_the_prompt_cache_is_never_turned_off_nor_unbounded() -> None:
    assert prompt_cache_mib(INFO, 16) == 1  # 4 KiB rounds up: 0 would disable it
    huge = {"block_count": 80, "head_count": 64, "head_count_kv": 8, "embedding_length": 8192}
    assert prompt_cache_mib(huge, 131072) * MIB == PROMPT_CACHE_CAP
    assert prompt_cache_mib(INFO, 8192, embedding=True) == 0
    assert estimate(INFO, WEIGHTS, 8192, 1, embedding=True).prompt_cache == 0


def test_the_engine_loads_with_the_cap() -> None:
    """The scheduler's cap reaches llama.cpp's cache_ram_mib, in-process and in engine processes."""
    from cove.engine.llamacpp import LlamaCppModel

    model = object.__new__(LlamaCppModel)
    model._secret = "s"
    spec = replace(request("a").spec, cache_ram_mib=3)
    assert model._params(spec).cache_ram_mib == 3


def test_each_load_is_told_to_the_hook_and_a_failing_hook_fails_nothing(
    engine: FakeEngine, clock: Clock, memory: Memory
) -> None:
    told: list[tuple[str, int]] = []

    def hook(spec: LoadSpec, model: Any, planned: int) -> None:
        told.append((spec.name, planned))
        raise RuntimeError("the database is gone")

    scheduler = Scheduler(engine, free_memory=memory, clock=clock, num_parallel=1, on_loaded=hook)
    try:
        use(scheduler, request("a", num_ctx=8192))
        use(scheduler, request("a", num_ctx=8192))  # loaded already: not told again
    finally:
        scheduler.close()
    assert told == [("a:latest", estimate(INFO, WEIGHTS, 8192, 1).at_load)]


def test_a_loaded_models_prompt_cache_may_still_grow_and_counts_against_the_next_load(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=1, max_loaded=4)
    use(scheduler, request("a", num_ctx=8192), keep_alive=-1)
    (held,) = scheduler.loaded()
    budget = held.spec.cache_ram_mib * MIB
    need = estimate(INFO, WEIGHTS, 8192, 1).total
    memory.free = need + budget // 2  # enough for "b" only if "a"'s prompt cache never fills
    with scheduler.use(request("a", num_ctx=8192)), pytest.raises(DoesNotFit):
        use(scheduler, request("b", num_ctx=8192))
    memory.free = need + budget
    use(scheduler, request("b", num_ctx=8192))
    assert loaded_names(scheduler) == ["a:latest", "b:latest"]


def test_an_engine_process_grows_by_what_it_does_not_hold_yet() -> None:
    import os
    from types import SimpleNamespace

    import psutil

    from cove.engine.scheduler import Runner, _may_grow

    spec = request("a").spec
    model: Any = SimpleNamespace(pid=os.getpid())
    rss = psutil.Process().memory_info().rss
    assert _may_grow(Runner(spec, model, rss // 2, 0.0, 0.0)) == 0
    assert 5 * GIB - 100 * MIB <= _may_grow(Runner(spec, model, rss + 5 * GIB, 0.0, 0.0)) <= 5 * GIB


class Fits:
    """A FitCache stand-in: llama.cpp's answer for every file, or none; counts what it was asked."""

    def __init__(self, fit: Fit | None) -> None:
        self.fit = fit
        self.asked: list[tuple[str, int]] = []

    def get(self, path: Path, digest: str, num_ctx: int, draft_ngram: int = 0) -> Fit | None:
        self.asked.append((digest, num_ctx))
        if self.fit is None:
            return None
        return replace(self.fit, num_ctx=num_ctx)


#: llama.cpp's fit of the fake model: a KV cache a quarter of cove's estimate (as a sliding
#: window keeps it), the weights and buffers as cove counts them.
FIT = Fit(
    num_ctx=8192,
    parallel=1,
    kv_type="f16",
    weights=WEIGHTS,
    kv_cache=kv_bytes_per_token(INFO) * 8192 // 4,
    compute=50 * MIB,
    runtime=40 * MIB,
)


def test_the_plan_takes_llamas_fit_where_it_has_one(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    fits = Fits(FIT)
    scheduler = make(num_parallel=4, kv_types=KV_TYPES, fits=fits)
    fitted = scaled(FIT, 4, "f16")
    prompt = prompt_cache_mib(INFO, 8192) * MIB
    # Room for four slots by llama.cpp's fit, not by cove's estimate (whose KV is 4x larger).
    memory.free = WEIGHTS + fitted.kv_cache + FIT.compute + FIT.runtime + prompt
    assert memory.free < estimate(INFO, WEIGHTS, 8192, 2).total
    use(scheduler, request("a", num_ctx=8192))
    assert (engine.loads[-1].num_parallel, engine.loads[-1].kv_cache_type) == (4, "f16")
    assert scheduler.loaded()[0].size == memory.free
    # Loaded: the next request asks for no fit; a new context is a new fit.
    use(scheduler, request("a", num_ctx=8192))
    assert fits.asked == [("a" * 8, 8192)]
    scheduler.close()
    # Where it does not fit by the fit either, the error says so and what would.
    scheduler = make(num_parallel=1, kv_types=("f16",), fits=Fits(FIT))
    memory.free = WEIGHTS + FIT.compute + FIT.runtime + MIB + kv_bytes_per_token(INFO) * 2 * 1024
    with pytest.raises(DoesNotFit, match="num_ctx 1024 would fit"):
        use(scheduler, request("b", num_ctx=8192))


def test_without_a_fit_the_plan_is_coves_estimate(
    make: SchedulerFactory, engine: FakeEngine, memory: Memory
) -> None:
    scheduler = make(num_parallel=4, kv_types=("f16",), fits=Fits(None))
    memory.free = estimate(INFO, WEIGHTS, 8192, 2).total
    use(scheduler, request("a", num_ctx=8192))
    assert engine.loads[-1].num_parallel == 2
    assert scheduler.loaded()[0].size == estimate(INFO, WEIGHTS, 8192, 2).total
    # An embedder is never fitted (llama.cpp's fit loads it as a chat model).
    fits = Fits(FIT)
    scheduler = make(num_parallel=1, fits=fits)
    use(scheduler, replace_spec(request("e", num_ctx=512), embedding=True))
    assert fits.asked == []
