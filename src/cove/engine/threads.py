"""How many engine threads a load gets, and how they wait: robust on a machine doing other things.

llama.cpp's worker threads meet at a barrier after every step of a decode. When one of them is
descheduled (another program wants its core) the whole step waits for it, so on a busy machine
fewer threads than cores decode faster, often several times faster; and threads that spin
while they wait (`poll`) take cores from the very programs they then wait for. cove therefore
counts the cores that are idle when the model loads, gives the engine no more threads than
that (nor more than physical cores), and has them sleep rather than spin while they wait
unless each has an idle core of its own.
benchmarks/threads.py measures the choice against fixed settings.

Embedders get the same choice: their steps are whole inputs (hundreds of tokens), yet on the
busy 2 cores here (load 4 to 6) all-minilm with 2 threads embedded 0.7 to 1.4 texts/s against
5 to 8 with 1 (poll 0 or 50 alike; benchmarks/embed_throughput.py --sweep). A BERT embedder
(no KV cache: an engine of its own costs only its compute buffers) therefore runs as several
engines instead (`embedder_engines`), one per physical core up to MAX_EMBED_ENGINES, each with
its share of the threads, and the inputs are split between them: engines that never wait for
one another have no barrier to stall on, so they can take every core. At load 1.5 here
(benchmarks/embed_throughput.py --sweep, 64 chunks of 225 tokens), two 1-thread engines
embedded 18.5 texts/s where one 2-thread engine made 12.7 to 12.9 and one 1-thread engine 10.6.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

#: How long the load samples the CPUs to count the idle ones (seconds).
SAMPLE_SECONDS = 0.25
#: llama.cpp's `cpuparams.poll` (0 to 100: how hard a waiting worker spins before it sleeps).
#: Its default, 50, when every thread has an idle core to itself: spinning costs nobody then.
SPIN_POLL = 50
#: 0 when the cores are shared: a spinning worker takes the core the one it waits for needs.
SHARED_POLL = 0
#: The most engines one embedder runs as: each takes a share of every batch, and with a batch
#: of a few inputs more engines would leave most of them idle.
MAX_EMBED_ENGINES = 4


@dataclass(frozen=True)
class Threads:
    count: int
    poll: int


def physical_cores() -> int:
    """Physical cores decode fastest; hyperthreads only add contention."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def idle_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores' worth of CPU went unused over a short sample (the sum of idle shares)."""
    before = psutil.cpu_times(percpu=True)
    time.sleep(seconds)
    after = psutil.cpu_times(percpu=True)
    idle = 0.0
    for start, end in zip(before, after, strict=False):
        total = sum(end) - sum(start)
        unused = (end.idle - start.idle) + (getattr(end, "iowait", 0.0) - getattr(start, "iowait", 0.0))
        if total > 0:
            idle += max(0.0, unused) / total
    return idle


def choose_threads(requested: int = 0, idle: float | None = None, physical: int | None = None) -> Threads:
    """`requested` threads when set (COVE_NUM_THREADS), else the physical cores idle now, at least
    one. A core counts when at least three quarters of it are free: a thread on a core another
    program holds part of the time stalls every step as long as that program runs (2 threads
    beside a half-busy core measured slower than 1). Workers spin while they wait only when each
    has an idle core (within a quarter of one), so only a `requested` count can make them sleep."""
    cores = physical if physical is not None else physical_cores()
    free = idle if idle is not None else idle_cores()
    count = requested if requested > 0 else max(1, min(cores, int(free + 0.25)))
    return Threads(count, SPIN_POLL if free >= count - 0.25 else SHARED_POLL)


def embedder_engines(threads: Threads, requested: int = 0, physical: int | None = None) -> tuple[int, int]:
    """(engines, threads each) of a BERT embedder: one engine per physical core (per `requested`
    thread when set), at most MAX_EMBED_ENGINES, sharing the `threads` chosen for one engine.
    Each engine has at least one thread, so on a busy machine (one idle core of two) the
    engines together take more threads than the idle cores: none waits for another, so each
    runs whenever its core is free instead of stalling a step for a thread that is not."""
    cores = requested if requested > 0 else (physical if physical is not None else physical_cores())
    engines = max(1, min(MAX_EMBED_ENGINES, cores))
    return engines, max(1, threads.count // engines)
