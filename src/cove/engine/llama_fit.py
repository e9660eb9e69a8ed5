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

import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CoveError
from ..store.gguf import read_gguf
from .memory import drafting_bytes

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
