"""llama.cpp's own memory fit for a load, run before the load: what each device would hold.

Checked on this machine (xllamacpp 2026.10.11549, CPU build): `CommonParams.fit_params` (on by
default) runs llama.cpp's fit inside every load. It builds the model and its context without
allocating them and sums what each buffer would take: weights, KV cache (as the architecture
lays it out: a sliding-window model keeps full-context K and V in a few layers only), compute
buffers. On a GPU it then lowers the layers offloaded until each device keeps 1 GiB free; on a
CPU-only build it compares host memory with the machine's *total* RAM and changes nothing.
xllamacpp has no call that returns that figure (`estimate_gpu_layers` is a Python port of
Ollama's guess, and took 18-32 s on the bundled 253 MB model here), so cove runs the fit in a
child process, reads the lines it logs, and stops the child before the weights load (about
three seconds). What it is compared with is cove's: the memory free *now* (planner.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import CoveError
from ..store.gguf import read_gguf
from .memory import KV_TYPE_BYTES, drafting_bytes

MIB = 1 << 20
#: A load's fit answers in about three seconds here; a machine that cannot is planned by cove.
TIMEOUT_S = 60.0
#: The free memory llama.cpp's fit keeps on each GPU (its default `fit_params_target`).
DEVICE_MARGIN = 1 << 30

#: What an engine process holds besides llama.cpp's buffers: the interpreter, cove's engine
#: code and the server's state, and the vocabulary (its strings, scores and lookup tables).
#: Measured here as peak RSS less the fit's buffers: 82.5 MB for smollm2:135m (49,152 tokens),
#: 132.2 MB for gemma3:270m (262,144 tokens), which this base and per-token cost give.
ENGINE_RUNTIME_BASE = 71_000_000
ENGINE_RUNTIME_PER_TOKEN = 233
#: ...and for a vocabulary of unknown size, a large one's.
ENGINE_RUNTIME_BYTES = ENGINE_RUNTIME_BASE + ENGINE_RUNTIME_PER_TOKEN * 262_144

#: The child: a load with the fit logged. The parent stops it once the fit is done.
_CHILD = r"""
import sys, xllamacpp
params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.n_ctx = int(sys.argv[2]) * int(sys.argv[3])
params.n_parallel = int(sys.argv[3])
kv = getattr(xllamacpp.ggml_type, "GGML_TYPE_" + sys.argv[4].upper())
params.cache_type_k = params.cache_type_v = kv
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
params.fit_params = True
params.verbosity = 4
xllamacpp.Server(params)
"""
_ROW = re.compile(r"memory_breakdown_print: \|\s+- (?P<label>[^|]+?)\s*\|(?P<numbers>[^|]*)\|")
_PROJECTED = re.compile(r"projected to use (\d+) MiB of (host|device) memory vs\. (\d+) MiB")
_DONE = ("common_fit_params:", "llama_params_fit:")


@dataclass(frozen=True)
class Fit:
    """What llama.cpp projects one load to hold (bytes), for the settings it was run with."""

    num_ctx: int
    parallel: int
    kv_type: str
    weights: int
    kv_cache: int
    compute: int
    #: The engine process itself (engine_runtime).
    runtime: int = ENGINE_RUNTIME_BYTES
    #: Of the above, what the GPUs hold, and the free GPU memory the fit compared it with.
    device: int = 0
    device_free: int = 0

    @property
    def at_load(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.runtime

    @property
    def all_on_device(self) -> bool:
        """Every layer fits on the GPU with llama.cpp's margin (else it offloads fewer)."""
        return bool(self.device) and self.device + DEVICE_MARGIN <= self.device_free

    def matches(self, num_ctx: int, parallel: int, kv_type: str) -> bool:
        return (self.num_ctx, self.parallel, self.kv_type) == (num_ctx, parallel, kv_type)


def parse(lines: Iterable[str], num_ctx: int, parallel: int, kv_type: str) -> Fit | None:
    """The fit from llama.cpp's log lines: the first memory breakdown (the load as asked) and
    the projection line; None when they are not there (another build's wording)."""
    weights = kv_cache = compute = device = device_free = 0
    rows = 0
    for line in lines:
        projected = _PROJECTED.search(line)
        if projected and projected.group(2) == "device":
            device_free = int(projected.group(3)) * MIB
        row = _ROW.search(line)
        if row is None:
            if rows and "memory_breakdown_print" not in line:
                rows = -1  # past the first table: later ones are the fit's trials
            continue
        numbers = [int(n) for n in re.findall(r"\d+", row.group("numbers"))]
        if rows < 0 or len(numbers) < 4:
            continue
        rows += 1
        # Host rows: self = model + context + compute; device rows start with total and free.
        used, model, context, buffers = numbers[-4:] if len(numbers) == 4 else numbers[2:6]
        weights, kv_cache, compute = weights + model * MIB, kv_cache + context * MIB, compute + buffers * MIB
        if len(numbers) > 4:
            device += used * MIB
    if not rows:
        return None
    return Fit(num_ctx, parallel, kv_type, weights, kv_cache, compute, device=device, device_free=device_free)


def vocabulary(path: Path) -> int | None:
    """How many tokens the model at `path` knows (None: its header does not say)."""
    try:
        return read_gguf(path).vocab_size
    except (OSError, ValueError, CoveError):
        return None


def engine_runtime(path: Path, draft_ngram: int = 0) -> int:
    """The engine process's own memory for the model at `path`, by its vocabulary's size, with
    prompt lookup drafting up to `draft_ngram` tokens a step (0: off)."""
    vocab = vocabulary(path)
    own = ENGINE_RUNTIME_BYTES if vocab is None else ENGINE_RUNTIME_BASE + ENGINE_RUNTIME_PER_TOKEN * vocab
    return own + drafting_bytes(draft_ngram, vocab)


def run_fit(
    path: Path,
    num_ctx: int,
    parallel: int = 1,
    kv_type: str = "f16",
    timeout: float = TIMEOUT_S,
    draft_ngram: int = 0,
) -> Fit | None:
    """llama.cpp's fit of `path` at these settings, run in a child that is stopped before the
    weights load; None when it cannot say (no engine, a build that logs otherwise, too slow).
    `draft_ngram`: the load's prompt lookup, for the engine's own memory beside the buffers."""
    args = [sys.executable, "-c", _CHILD, str(path), str(num_ctx), str(parallel), kv_type]
    try:
        child = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    except OSError:
        return None
    lines: list[str] = []
    stop = threading.Timer(timeout, child.kill)  # a child that hangs ends its output too
    stop.start()
    try:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            if any(mark in line for mark in _DONE):
                break
    finally:
        stop.cancel()
        child.kill()
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    fit = parse(lines, num_ctx, parallel, kv_type)
    return None if fit is None else replace(fit, runtime=engine_runtime(path, draft_ngram))


# -- for the scheduler: one fit per model file and context, kept ------------------------------

#: Where fits are kept in COVE_HOME, so a load in the next process need not run one.
FITS_FILE = "fits.json"


def scaled(fit: Fit, parallel: int, kv_type: str) -> Fit:
    """The fit for other slots and another KV-cache type than it was run for: the KV cache is
    each slot's context in every layer that keeps one, so it grows with the slots and with the
    bytes of its type; the weights and the compute buffers (sized by the batch) stay."""
    ratio = parallel / fit.parallel * KV_TYPE_BYTES[kv_type] / KV_TYPE_BYTES[fit.kv_type]
    return replace(fit, parallel=parallel, kv_type=kv_type, kv_cache=int(fit.kv_cache * ratio))


class FitCache:
    """llama.cpp's fit of each model file at each context (one slot, f16 KV cache; `scaled`
    gives the others), run once and kept in memory and in COVE_HOME's fits.json (keyed by the
    file's digest), so only the first load of a file at a context waits for it (about three
    seconds). A fit that cannot be had is not tried again in this process. Thread-safe."""

    def __init__(self, home: Path | None, run: Callable[..., Fit | None] = run_fit) -> None:
        self._file = home / FITS_FILE if home is not None else None
        self._run = run
        self._lock = threading.Lock()
        self._known: dict[str, Fit | None] = {}
        self._loaded = False

    def get(self, path: Path, digest: str, num_ctx: int, draft_ngram: int = 0) -> Fit | None:
        key = f"{digest}:{num_ctx}:{draft_ngram}"
        with self._lock:  # one fit at a time: two at once would each take twice as long here
            self._read()
            if key not in self._known:
                self._known[key] = self._run(path, num_ctx, 1, "f16", draft_ngram=draft_ngram)
                if self._known[key] is not None:
                    self._write()
            return self._known[key]

    def _read(self) -> None:
        if self._loaded or self._file is None:
            return
        self._loaded = True
        try:
            data = json.loads(self._file.read_text("utf-8"))
            self._known.update({key: Fit(**value) for key, value in data.items()})
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # none kept yet, or unreadable: fits are run again as needed

    def _write(self) -> None:
        if self._file is None:
            return
        from ..store.atomic import atomic_write_bytes

        kept = {key: asdict(fit) for key, fit in self._known.items() if fit is not None}
        with contextlib.suppress(OSError, CoveError):  # a read-only store: fit again next time
            atomic_write_bytes(self._file, json.dumps(kept).encode())
