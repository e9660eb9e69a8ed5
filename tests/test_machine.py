"""What cove.machine reads of this machine: CPU flags, llama.cpp's devices, disk, bandwidth."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import xllamacpp

from cove import machine
from cove.machine import Machine

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000
flags\t\t: fpu pni ssse3 fma avx avx2 f16c avx512f avx512bw bmi2

processor\t: 1
model name\t: Example CPU 9000
flags\t\t: fpu pni
"""


class DevType:
    """Stands in for xllamacpp's ggml_backend_dev_type enum (only its str() is read)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_{self.name}"


def device(name: str, description: str, kind: str, free: int = 0, total: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "type": DevType(kind),
        "memory_free": free,
        "memory_total": total,
    }


def test_cpu_model_and_flags_from_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "_cpuinfo", lambda: CPUINFO)
    assert machine.cpu_model() == "Example CPU 9000"
    # Linux calls SSE3 "pni"; only the SIMD sets llama.cpp picks kernels by are kept, in order.
    assert machine.cpu_flags() == ("sse3", "ssse3", "avx", "avx2", "f16c", "fma", "avx512f", "avx512bw")


def test_gpus_from_the_engines_device_list(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [
        device("CPU", "AMD EPYC", "CPU", 64 << 30, 64 << 30),
        device("BLAS", "OpenBLAS", "ACCEL"),
        device("CUDA0", "NVIDIA GeForce RTX 4090", "GPU", 23 << 30, 24 << 30),
    ]
    monkeypatch.setattr(xllamacpp, "get_device_info", lambda: devices)
    info = machine.engine_info()
    assert info["backends"] == ["accel", "cpu", "gpu"]
    (gpu,) = info["gpus"]  # the accelerator is no GPU: it has no memory of its own
    assert (gpu.name, gpu.free, gpu.total, gpu.kind) == ("CUDA0", 23 << 30, 24 << 30, "gpu")
    assert gpu.bandwidth_gbs == 1008.0  # from the table of common chips
    described = machine.describe(measure=False)
    assert described.gpus == (gpu,) and not described.unified_memory


def test_apple_gpu_means_unified_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [
        device("Metal", "Apple M2 Pro", "GPU", 12 << 30, 12 << 30),
        device("CPU", "Apple M2 Pro", "CPU"),
    ]
    monkeypatch.setattr(xllamacpp, "get_device_info", lambda: devices)
    described = machine.describe(measure=False)
    assert described.unified_memory and described.gpus[0].bandwidth_gbs == 200.0


def test_this_cpu_only_machine(tmp_path: Path) -> None:
    described = machine.describe(tmp_path / "not" / "yet", measure=False)
    assert described.disk_free and described.disk_free > 0  # of the nearest folder that exists
    assert described.bandwidth_gbs is None
    assert described.engine["available"] and "cpu" in described.engine["backends"]
    # The engine's own list of what it was built for ("SSE3", "AVX2", ... on x86).
    assert described.engine["features"] and all(f.isupper() for f in described.engine["features"])
    assert json.loads(json.dumps(described.to_dict())) == described.to_dict()


def test_the_clock_is_the_highest_else_the_current(monkeypatch: pytest.MonkeyPatch) -> None:
    def clock(current: float, highest: float) -> None:
        frequency = SimpleNamespace(current=current, min=0.0, max=highest)  # psutil's fields
        monkeypatch.setattr(machine.psutil, "cpu_freq", lambda: frequency)

    clock(1400.0, 4600.0)  # a laptop idling: what it reaches when it works counts
    assert machine.cpu_mhz() == 4600.0
    clock(2245.8, 0.0)  # a virtual machine gives only the clock now
    assert machine.cpu_mhz() == 2245.8
    clock(0.0, 0.0)
    assert machine.cpu_mhz() is None
    monkeypatch.setattr(machine.psutil, "cpu_freq", lambda: None)  # none known to the system
    assert machine.cpu_mhz() is None
    assert machine.describe(measure=False).cpu_mhz is None


def test_bandwidth_is_measured_and_remembered_for_a_week(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert machine.measure_bandwidth(seconds=0.05, size=4 << 20) > 0.1
    monkeypatch.setattr(machine, "measure_bandwidth", lambda: 9.5)
    monkeypatch.setattr(machine, "bandwidth_now", lambda: 9.0)
    assert machine.this_machine(tmp_path).bandwidth_gbs == 9.5
    monkeypatch.setattr(machine, "measure_bandwidth", lambda: 3.0)
    monkeypatch.setattr(machine, "bandwidth_now", lambda: 3.0)
    assert machine.this_machine(tmp_path).bandwidth_gbs == 9.5  # remembered
    # Doctor measures anew; a figure measured while other programs ran does not replace the
    # machine's best of the week, it says what a thread gets now.
    fresh = machine.this_machine(tmp_path, fresh=True)
    assert (fresh.bandwidth_gbs, fresh.bandwidth_now_gbs) == (9.5, 3.0)
    assert fresh.cpu_share == pytest.approx(3.0 / 9.5)
    record = tmp_path / machine.BANDWIDTH_FILE
    old = {"bandwidth_gbs": 7.0, "measured_at": time.time() - machine.BANDWIDTH_MAX_AGE_S - 1}
    record.write_text(json.dumps(old))
    assert machine.remembered_bandwidth(tmp_path) is None
    record.write_text("not json")
    assert machine.this_machine(tmp_path).bandwidth_gbs == 3.0
    # A short copy that caught a quiet instant raises the best: it shows what the machine can.
    monkeypatch.setattr(machine, "bandwidth_now", lambda: 12.0)
    assert machine.this_machine(tmp_path).bandwidth_gbs == 12.0
    assert machine.remembered_bandwidth(tmp_path) == 12.0


def test_the_programs_holding_the_most_ram() -> None:
    ballast = bytearray(300 << 20)  # this test's python now holds more than most programs
    ballast[::4096] = b"x" * len(range(0, len(ballast), 4096))  # touched, so resident
    programs = machine.largest_programs()
    assert 1 <= len(programs) <= 3
    held = [size for _, size in programs]
    assert held == sorted(held, reverse=True) and held[0] >= 300 << 20
    described = machine.describe(measure=False)
    assert Machine.from_dict(json.loads(json.dumps(described.to_dict()))) == described
    del ballast


def test_what_the_cpu_has_free_now_is_measured_without_the_long_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert machine.bandwidth_now(seconds=0.02, size=4 << 20) > 0.1
    monkeypatch.setattr(machine, "bandwidth_now", lambda: 6.0)
    monkeypatch.setattr(machine, "idle_cores", lambda: 0.6)
    described = machine.describe(measure=False)
    assert (described.bandwidth_now_gbs, described.idle_cores, described.bandwidth_gbs) == (6.0, 0.6, None)
    assert described.thread_share is None  # the stand-in copy took no time to measure
    assert described.cpu_share is None  # nothing to set it against yet
    busy = Machine.from_dict({**described.to_dict(), "bandwidth_gbs": 12.0})
    assert busy.cpu_share == 0.5 and busy.to_dict()["cpu_share"] == 0.5
    assert Machine.from_dict({**described.to_dict(), "bandwidth_gbs": 4.0}).cpu_share == 1.0


def test_the_share_of_a_core_is_the_cpu_time_the_copy_got(monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy that got its core for 0.3 s of the 0.6 s it took: the thread's share is half,
    # whatever its rate (a median of copies, which leaves the waits out) says.
    clock = iter([10.0, 10.6])
    cpu = iter([1.0, 1.3])
    monkeypatch.setattr(machine, "idle_cores", lambda: 0.4)
    monkeypatch.setattr(machine, "bandwidth_now", lambda: 20.0)
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(machine.time, "thread_time", lambda: next(cpu))
    described = machine.describe(measure=False)
    assert described.thread_share == 0.5
    assert Machine.from_dict({**described.to_dict(), "bandwidth_gbs": 20.0}).cpu_share == 0.5
