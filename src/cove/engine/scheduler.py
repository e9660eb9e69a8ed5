"""Which models are loaded: load on demand, keep alive, unload idle ones, bound the queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from ..errors import Busy, Cancelled, DoesNotFit, EngineCrashed, ShuttingDown
from .base import EngineFactory, LoadedModel, LoadSpec
from .crashes import CrashLog
from .llama_fit import Fit, FitCache, scaled
from .memory import MIB, Estimate, available_bytes, estimate, plan_load, process_limit, prompt_cache_mib


@dataclass
class Runner:
    """A loaded model and who is using it."""

    spec: LoadSpec
    model: LoadedModel
    size: int
    loaded_at: float
    expires_at: float
    active: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "digest": self.spec.digest,
            "size": self.size,
            "num_ctx": self.spec.num_ctx,
            "num_parallel": self.spec.num_parallel,
            "active": self.active,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class ModelRequest:
    """What a caller wants loaded: the spec without a slot count, plus facts to size it."""

    spec: LoadSpec
    info: dict[str, Any]
    weights: int
    #: llama.cpp's fit of the file at the spec's context (one slot, f16), when it was had.
    fit: Fit | None = None

    def need(self, parallel: int, kv_type: str) -> Estimate:
        """What the load takes with these slots and KV-cache type: llama.cpp's fit of the file
        where there is one (scaled to them), else cove's estimate; the prompt cache is cove's
        in both (llama.cpp's fit does not see it)."""
        spec = self.spec
        own = estimate(
            self.info,
            self.weights,
            spec.num_ctx,
            parallel,
            embedding=spec.embedding,
            kv_type=kv_type,
            draft_ngram=spec.draft_ngram,
        )
        if self.fit is None:
            return own
        fit = scaled(self.fit, parallel, kv_type)
        return replace(own, weights=fit.weights, kv_cache=fit.kv_cache, overhead=fit.compute + fit.runtime)


FOREVER = float("inf")


def _may_grow(runner: Runner) -> int:
    """What a loaded model may still take: its planned size less what its engine process holds
    now; for an engine in this process (no figure of its own), its whole prompt-cache budget."""
    if runner.spec.remote:
        return 0  # its memory is upstream's
    pid = getattr(runner.model, "pid", None)  # an engine process's (IsolatedModel)
    if isinstance(pid, int):
        try:
            return max(0, runner.size - int(psutil.Process(pid).memory_info().rss))
        except psutil.Error:
            return 0  # it has ended: the reaper drops it
    return runner.spec.cache_ram_mib * MIB


#: Told of each load (the sized spec, the model, the bytes planned for it), to measure it.
LoadHook = Callable[[LoadSpec, LoadedModel, int], None]


def remote_engine(spec: LoadSpec) -> LoadedModel:
    """A model served by OpenAI-compatible upstreams (engine/remote.py), imported when one is used."""
    from .remote import RemoteModel

    return RemoteModel(spec)


class Scheduler:
    """Thread-safe. `with scheduler.use(request, keep_alive) as model:` runs one request."""

    def __init__(
        self,
        factory: EngineFactory,
        *,
        max_loaded: int = 2,
        num_parallel: int = 8,
        max_queue: int = 64,
        keep_alive_s: float = 300.0,
        free_memory: Callable[[], int] = available_bytes,
        clock: Callable[[], float] = time.monotonic,
        on_loaded: LoadHook | None = None,
        kv_types: tuple[str, ...] = ("f16",),
        remote_factory: EngineFactory = remote_engine,
        fits: FitCache | None = None,
    ) -> None:
        self._factory = factory
        #: Loads a spec with `remote` upstreams: no memory planned, no local file, no crash log.
        self._remote_factory = remote_factory
        self.max_loaded = max_loaded
        self.num_parallel = num_parallel
        self.max_queue = max_queue
        self.keep_alive_s = keep_alive_s
        self._free_memory = free_memory
        self._clock = clock
        self._on_loaded = on_loaded
        #: llama.cpp's fits of model files, for the memory plan (None: cove's estimate alone).
        self._fits = fits
        #: KV-cache types the engine honours (LoadSpec.kv_cache_type): a load is planned only in
        #: one of them, since planning q8_0 for an engine that allocates f16 under-counts it.
        self.kv_types = kv_types
        self._runners: dict[tuple[object, ...], Runner] = {}
        self._waiting: dict[str, int] = {}  # queued for a slot of a loaded model
        self._loading: dict[str, int] = {}  # queued behind a model being loaded
        self._pending: set[tuple[object, ...]] = set()  # keys being loaded right now
        self._remote_pending: set[tuple[object, ...]] = set()  # ...of which remote ones
        #: Bytes each load under way will take: allocated by its engine soon, not yet seen as used.
        self._pending_bytes: dict[tuple[object, ...], int] = {}
        self._cond = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._closed = False
        self.crashes = CrashLog(clock)

    @contextmanager
    def use(
        self,
        request: ModelRequest,
        keep_alive: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[LoadedModel]:
        """Hold a slot of the model for one request; a set `cancel` gives up waiting for it."""
        runner = self._acquire(request)
        try:
            self._wait_for_slot(runner, cancel)
            try:
                yield runner.model
            finally:
                runner.slots.release()
        finally:
            self._release(runner, self.keep_alive_s if keep_alive is None else keep_alive)

    def _wait_for_slot(self, runner: Runner, cancel: threading.Event | None) -> None:
        """Queue in cove, not in the engine, so a client that leaves is dropped at once."""
        with self._cond:
            self._waiting[runner.spec.name] = self._waiting.get(runner.spec.name, 0) + 1
        try:
            while not runner.slots.acquire(timeout=0.05):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the client went away while queued")
        finally:
            with self._cond:
                self._waiting[runner.spec.name] -= 1

    def _acquire(self, request: ModelRequest) -> Runner:
        name = request.spec.name
        request = self._with_fit(request)
        with self._cond:
            if self._closed:
                raise ShuttingDown(f"cove is shutting down; {name} is not started again")
            runner = self._find(request.spec)
            inflight = (runner.active if runner else 0) + self._loading.get(name, 0)
            slots = runner.spec.num_parallel if runner else self.num_parallel
            if inflight >= slots + self.max_queue:
                raise Busy(f"{name} has {inflight} requests in flight; retry shortly")
            self._loading[name] = self._loading.get(name, 0) + 1
            try:
                runner = self._find_or_load(request)
            finally:
                self._loading[name] -= 1
            runner.active += 1
            runner.expires_at = FOREVER
            return runner

    def _with_fit(self, request: ModelRequest) -> ModelRequest:
        """The request with llama.cpp's fit of its file, for a model that is to be loaded (not
        held already), run without the lock (the first time for a file and context: up to a
        second or so here) so requests to loaded models never wait for it. An embedder, a model
        with a draft (the fit sees one file) and a remote one are planned by cove's estimate."""
        spec = request.spec
        if self._fits is None or request.fit is not None or spec.remote or spec.key in self._runners:
            return request
        if spec.embedding or spec.rerank or spec.draft_path or "draft" in request.info:
            return request
        try:
            fit = self._fits.get(spec.model_path, spec.digest, spec.num_ctx, spec.draft_ngram)
        except Exception:  # a fit that fails leaves the estimate to plan: it never fails a load
            fit = None
        return request if fit is None else replace(request, fit=fit)

    def _find(self, spec: LoadSpec) -> Runner | None:
        """The loaded model for `spec`; one whose engine process died is dropped, to load afresh."""
        self._drop_dead()
        return self._runners.get(spec.key)

    def _drop_dead(self) -> None:
        """Called with the lock held: forget engines whose process ended, and note the crash.
        Requests still on one fail with the engine's own error."""
        for key, runner in list(self._runners.items()):
            if not runner.model.alive:
                why = getattr(runner.model, "why_stopped", None)
                self.crashes.crashed_running(runner.spec, why() if callable(why) else "it stopped")
                self._unload(key)

    def _find_or_load(self, request: ModelRequest) -> Runner:
        """Called with the lock held. Loading itself happens with the lock released, so a slow
        load never stalls requests to models already loaded, nor `ps`."""
        spec = request.spec
        while True:
            runner = self._find(spec)
            if runner is not None:
                return runner
            if spec.key not in self._pending:
                break
            self._cond.wait(timeout=1.0)  # someone else is loading this very model
        if spec.remote:
            return self._load_remote(spec)
        self.crashes.check(spec)  # a model that just crashed is not started again at once
        sized = self._make_room(request)
        self._pending.add(spec.key)
        self._cond.release()
        try:
            model = self._factory(sized)
            self._measure(sized, model, request)
        except EngineCrashed as exc:
            if exc.loading and not exc.killed:
                self.crashes.crashed_loading(spec, exc.why)
            else:  # killed from outside while loading: not the file's fault, but back off
                self.crashes.crashed_running(spec, exc.why)
            raise
        finally:
            self._cond.acquire()
            self._pending.discard(spec.key)
            self._pending_bytes.pop(spec.key, None)
            self._cond.notify_all()
        self.crashes.loaded(spec)
        if self._closed:  # it loaded while cove was shutting down: nobody would close it
            model.close()
            raise ShuttingDown(f"cove is shutting down; {spec.name} is not kept loaded")
        return self._register(sized, model, request)

    def _load_remote(self, spec: LoadSpec) -> Runner:
        """Called with the lock held (released while it connects). A remote model takes no
        memory here and no place among max_loaded; its slots are its replicas' combined."""
        self._evict_same_model(spec)
        self._pending.add(spec.key)
        self._remote_pending.add(spec.key)
        self._cond.release()
        try:
            model = self._remote_factory(spec)
        finally:
            self._cond.acquire()
            self._pending.discard(spec.key)
            self._remote_pending.discard(spec.key)
            self._cond.notify_all()
        if self._closed:
            model.close()
            raise ShuttingDown(f"cove is shutting down; {spec.name} is not kept loaded")
        sized = replace(spec, num_parallel=self.num_parallel * len(spec.remote))
        runner = Runner(sized, model, 0, self._clock(), FOREVER)
        runner.slots = threading.Semaphore(sized.num_parallel)
        self._runners[sized.key] = runner
        self._start_reaper()
        return runner

    def _make_room(self, request: ModelRequest) -> LoadSpec:
        """Evict what must go, then plan the load against the memory free now: fewer slots, then
        a q8_0 KV cache, then idle models unloaded; DoesNotFit (saying what would fit) rather
        than a load the machine cannot hold."""
        spec = request.spec
        self._evict_same_model(spec)
        while self._local_count() >= self.max_loaded:
            if not self._evict_idle():
                self._cond.wait(timeout=1.0)
        while True:
            try:
                parallel, kv = self._plan(request, self._free_now())
                break
            except DoesNotFit:
                if not self._evict_idle():  # a model nobody is using gives its memory back
                    raise
        info, embedding = request.info, spec.embedding
        need = request.need(parallel, kv)
        self._pending_bytes[spec.key] = need.total
        return replace(
            spec,
            num_parallel=parallel,
            kv_cache_type=kv,
            cache_ram_mib=prompt_cache_mib(info, spec.num_ctx, embedding, kv),
            memory_limit=process_limit(need),
        )

    def _free_now(self) -> int:
        """The memory free now, less what loads under way are about to take and what models
        already loaded may still grow to (their prompt caches fill as conversations come and go):
        the system counts only what they hold now as used."""
        growth = sum(_may_grow(r) for r in self._runners.values())
        return self._free_memory() - sum(self._pending_bytes.values()) - growth

    def _plan(self, request: ModelRequest, free: int) -> tuple[int, str]:
        spec = request.spec
        return plan_load(
            spec.name,
            request.info,
            request.weights,
            spec.num_ctx,
            self.num_parallel,
            free,
            embedding=spec.embedding,
            kv_type=spec.kv_type if spec.kv_type in self.kv_types else None,
            kv_types=self.kv_types,
            draft_ngram=spec.draft_ngram,
            need=request.need,
        )

    def _measure(self, sized: LoadSpec, model: LoadedModel, request: ModelRequest) -> None:
        """Tell the hook (lock released): a measurement that fails never fails the load."""
        if self._on_loaded is None:
            return
        planned = request.need(sized.num_parallel, sized.kv_cache_type)
        with suppress(Exception):  # measuring is a side matter: a failure here is no failed load
            self._on_loaded(sized, model, planned.at_load)

    def _register(self, sized: LoadSpec, model: LoadedModel, request: ModelRequest) -> Runner:
        parallel = sized.num_parallel
        size = request.need(parallel, sized.kv_cache_type).total
        now = self._clock()
        runner = Runner(sized, model, size, now, FOREVER, info=request.info)
        runner.slots = threading.Semaphore(parallel)
        self._runners[sized.key] = runner
        self._start_reaper()
        return runner

    def _evict_same_model(self, spec: LoadSpec) -> None:
        """A new context size or template for a loaded model replaces it once it is idle."""
        for key, runner in list(self._runners.items()):
            if runner.spec.name == spec.name and runner.active == 0:
                self._unload(key)

    def _local_count(self) -> int:
        """Models held in this machine's memory, loaded or loading (remote ones hold none)."""
        held = sum(1 for r in self._runners.values() if not r.spec.remote)
        return held + sum(1 for key in self._pending if key not in self._remote_pending)

    def _evict_idle(self) -> bool:
        """Unload the idle local model that expires first (a remote one frees no memory)."""
        idle = [(r.expires_at, k) for k, r in self._runners.items() if r.active == 0 and not r.spec.remote]
        if not idle:
            return False
        self._unload(min(idle)[1])
        return True

    def _unload(self, key: tuple[object, ...]) -> None:
        runner = self._runners.pop(key)
        runner.model.close()
        self._cond.notify_all()

    def _release(self, runner: Runner, keep_alive: float) -> None:
        if runner.model.alive:
            self.crashes.served(runner.spec)
        with self._cond:
            runner.active -= 1
            if runner.active == 0:
                keep = FOREVER if keep_alive < 0 else keep_alive
                runner.expires_at = self._clock() + keep
                if keep == 0 and self._runners.get(runner.spec.key) is runner:
                    self._unload(runner.spec.key)
            self._cond.notify_all()

    def unload_expired(self) -> list[str]:
        """Unload idle models whose keep-alive ran out; returns their names."""
        with self._cond:
            now = self._clock()
            gone = [k for k, r in self._runners.items() if r.active == 0 and r.expires_at <= now]
            names = [self._runners[k].spec.name for k in gone]
            for key in gone:
                self._unload(key)
            return names

    def stop(self, name: str, digest: str | None = None) -> bool:
        """Unload a model now (waits for its requests to finish); copies share one by digest."""
        with self._cond:
            keys = [k for k, r in self._runners.items() if name == r.spec.name or digest == r.spec.digest]
            for key in keys:
                while key in self._runners and self._runners[key].active:
                    self._cond.wait(timeout=1.0)
                if key in self._runners:
                    self._unload(key)
            return bool(keys)

    def loaded(self) -> list[Runner]:
        """The models loaded now: never one whose engine has died."""
        with self._cond:
            self._drop_dead()
            return list(self._runners.values())

    def queue_depth(self) -> int:
        with self._cond:
            return sum(self._waiting.values()) + sum(self._loading.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for key in list(self._runners):
                self._unload(key)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="cove-reaper", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        while not self._closed:
            time.sleep(1.0)
            self.unload_expired()
            with self._cond:
                self._drop_dead()  # so memory is freed for others' loads, and counted right
