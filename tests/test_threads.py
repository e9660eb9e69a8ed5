"""The engine's thread count and poll level: the idle physical cores at load, sleeping waits."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cove.engine import threads
from cove.engine.base import LoadSpec
from cove.engine.llamacpp import LlamaCppModel
from cove.engine.threads import SHARED_POLL, SPIN_POLL, Threads, choose_threads, idle_cores


def test_a_thread_per_idle_physical_core() -> None:
    assert choose_threads(idle=7.9, physical=8) == Threads(8, SPIN_POLL)
    assert choose_threads(idle=7.7, physical=8) == Threads(7, SPIN_POLL)  # a core is partly taken
    assert choose_threads(idle=1.3, physical=2).count == 1  # one core busy: one thread, not a stalled pair
    assert choose_threads(idle=5.0, physical=2) == Threads(2, SPIN_POLL)  # at most the physical cores
    assert choose_threads(idle=0.1, physical=4).count == 1  # a machine flat out still gets a thread


def test_a_partly_busy_core_gets_no_thread() -> None:
    assert choose_threads(idle=1.6, physical=2) == Threads(1, SPIN_POLL)
    assert choose_threads(idle=1.8, physical=2) == Threads(2, SPIN_POLL)


def test_workers_sleep_while_they_wait_only_when_asked_for_more_than_the_idle_cores() -> None:
    assert choose_threads(2, idle=1.6, physical=2) == Threads(2, SHARED_POLL)


def test_an_asked_thread_count_wins() -> None:
    assert choose_threads(3, idle=0.0, physical=2) == Threads(3, SHARED_POLL)
    assert choose_threads(2, idle=8.0, physical=8) == Threads(2, SPIN_POLL)


def test_a_spinning_process_shows_as_a_busy_core() -> None:
    quiet = idle_cores(0.3)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = idle_cores(0.3)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy < quiet - 0.5 or busy < 0.5


def test_the_engine_gets_the_choice_and_sleeping_waits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(threads, "idle_cores", lambda seconds=0.0: 1.2)
    model = LlamaCppModel.__new__(LlamaCppModel)
    model._secret = "s"
    spec = LoadSpec(name="m", model_path=tmp_path / "m.gguf", digest="d", num_ctx=256)
    params = model._params(spec)
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == 1
    assert params.cpuparams.poll == params.cpuparams_batch.poll == SPIN_POLL  # its core is idle
    asked = model._params(replace(spec, num_threads=2)).cpuparams  # COVE_NUM_THREADS
    assert asked.n_threads == 2 and asked.poll == SHARED_POLL
