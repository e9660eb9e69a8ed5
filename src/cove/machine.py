"""What this machine has for running models: CPU, memory, GPUs, disk, the engine's build, and
the memory bandwidth that bounds decode speed on a CPU; recorded as plain data (`to_dict`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from .engine.threads import idle_cores
from .errors import CoveError

GB = 1_000_000_000
#: Instruction sets llama.cpp's CPU kernels choose between, as /proc/cpuinfo spells them.
SIMD_FLAGS = (
    "sse3",
    "ssse3",
    "avx",
    "avx2",
    "f16c",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)
#: Linux names some flags otherwise ("pni" is SSE3).
_FLAG_ALIASES = {"pni": "sse3"}
BANDWIDTH_BUFFER = 64 << 20  # far larger than any CPU cache, so the copy measures RAM
BANDWIDTH_SECONDS = 1.0
#: The copy repeated just now, for what a thread gets with the machine as busy as it is.
BANDWIDTH_NOW_SECONDS = 0.5


@dataclass(frozen=True)
class GPU:
    """One llama.cpp device that is not the CPU."""

    name: str
    description: str
    total: int
    free: int
    kind: str = "gpu"  # "gpu" (its own memory) or "igpu" (shares the host's RAM)
    #: Memory bandwidth in GB/s when known (a table of common chips, or a recorded figure).
    bandwidth_gbs: float | None = None


@dataclass(frozen=True)
class Machine:
    """A description the planner reads; `describe()` builds it here, tests record others."""

    cpu_model: str
    physical_cores: int
    logical_cores: int
    cpu_flags: tuple[str, ...]
    ram_total: int
    ram_available: int
    #: RAM that the operating system and other programs hold (total minus available).
    ram_used_by_others: int
    gpus: tuple[GPU, ...] = ()
    #: The GPU works in the host's RAM (Apple silicon): weights there count once, not twice.
    unified_memory: bool = False
    disk_free: int | None = None
    home: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    #: Measured RAM read bandwidth in GB/s (None: not measured).
    bandwidth_gbs: float | None = None
    system: str = ""
    #: The programs holding the most RAM: (name, bytes resident, summed over its processes).
    programs: tuple[tuple[str, int], ...] = ()
    #: Runnable threads over the last minute (None: not known); a busy machine decodes slower.
    load_average: float | None = None
    #: The same copy as `bandwidth_gbs`, short, just now: what one thread gets of the memory
    #: and of a core with the machine as busy as it is (None: not measured).
    bandwidth_now_gbs: float | None = None
    #: Cores' worth of CPU unused over a short sample just now (engine/threads.py): how many
    #: threads the engine will get (None: not measured).
    idle_cores: float | None = None
    #: The CPU time the copy just now got over the wall time it took: the share of a core a
    #: CPU-bound thread gets now (None: not measured). The copy's rate, a median of copies,
    #: leaves out the time it waited for its core, so it cannot say this itself.
    thread_share: float | None = None
    #: The CPU's highest clock in MHz, or its clock now where the system gives no highest (a
    #: virtual machine); None: not known. A core's arithmetic in a decode goes with it.
    cpu_mhz: float | None = None

    @property
    def cpu_share(self) -> float | None:
        """The share of a core an engine thread can expect now: what the copy just now got
        (thread_share), else its rate against the machine's best (None when unknown)."""
        if self.thread_share is not None:
            return self.thread_share
        if not self.bandwidth_now_gbs or not self.bandwidth_gbs:
            return None
        return min(1.0, self.bandwidth_now_gbs / self.bandwidth_gbs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_flags"] = list(self.cpu_flags)
        data["gpus"] = [asdict(g) for g in self.gpus]
        data["programs"] = [list(p) for p in self.programs]
        data["cpu_share"] = self.cpu_share
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        """A recorded description (tests, `cove doctor --json` from another machine)."""
        values = dict(data)
        values["cpu_flags"] = tuple(values.get("cpu_flags") or ())
        values["gpus"] = tuple(GPU(**g) for g in values.get("gpus") or ())
        values["programs"] = tuple((str(n), int(b)) for n, b in values.get("programs") or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def describe(home: Path | None = None, measure: bool = True) -> Machine:
    """This machine now; `measure` spends about a second finding the memory bandwidth (and
    always half a second sampling what the CPU has free now, which speed predictions need)."""
    memory = psutil.virtual_memory()
    engine = engine_info()
    gpus = tuple(engine.pop("gpus", ()))
    idle = idle_cores()
    bandwidth = measure_bandwidth() if measure else None
    cpu, wall = time.thread_time(), time.perf_counter()
    now = bandwidth_now()
    share = _share(time.thread_time() - cpu, time.perf_counter() - wall)
    return Machine(
        cpu_model=cpu_model(),
        cpu_mhz=cpu_mhz(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count() or os.cpu_count() or 1,
        cpu_flags=cpu_flags(),
        ram_total=int(memory.total),
        ram_available=int(memory.available),
        ram_used_by_others=int(memory.total - memory.available),
        gpus=gpus,
        unified_memory=any(g.kind == "igpu" or "apple" in g.description.lower() for g in gpus),
        disk_free=disk_free(home) if home is not None else None,
        home=str(home) if home is not None else None,
        engine=engine,
        bandwidth_gbs=bandwidth,
        system=f"{platform.system()} {platform.machine()}",
        programs=largest_programs(),
        load_average=load_average(),
        bandwidth_now_gbs=now,
        idle_cores=round(idle, 2),
        thread_share=share,
    )


def _share(cpu_s: float, wall_s: float) -> float | None:
    """CPU time over wall time; None over a span too short for the CPU clock to say."""
    return round(min(1.0, cpu_s / wall_s), 2) if wall_s >= 0.05 else None


def load_average() -> float | None:
    try:
        return round(psutil.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def largest_programs(count: int = 3) -> tuple[tuple[str, int], ...]:
    """The programs (by name, all their processes together) holding the most RAM; shared
    pages count in each, so the figures are upper bounds."""
    held: dict[str, int] = {}
    for process in psutil.process_iter(["name", "memory_info"]):
        info = process.info
        if info.get("memory_info") is None or not info.get("name"):
            continue  # another user's process, or one that just ended
        held[info["name"]] = held.get(info["name"], 0) + int(info["memory_info"].rss)
    return tuple(sorted(held.items(), key=lambda item: -item[1])[:count])


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text("utf-8", errors="replace")
    except OSError:  # not Linux
        return ""


def cpu_mhz() -> float | None:
    try:
        clock = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        return None
    if clock is None:
        return None
    return round(clock.max or clock.current, 1) or None


def cpu_model() -> str:
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> tuple[str, ...]:
    """The SIMD instruction sets the CPU reports (the first core's flags speak for all)."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have = {_FLAG_ALIASES.get(flag, flag) for flag in value.split()}
            return tuple(flag for flag in SIMD_FLAGS if flag in have)
    return ()


def disk_free(home: Path) -> int | None:
    """Free bytes where models would be stored (the nearest folder that exists)."""
    folder = home
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def engine_info() -> dict[str, Any]:
    """The engine's build, the CPU features it was compiled for, and its devices (GPUs)."""
    try:
        import xllamacpp
    except ImportError:
        return {"available": False}
    info: dict[str, Any] = {"available": True, "build": dict(getattr(xllamacpp, "BUILD_INFO", {}))}
    system = xllamacpp.get_system_info() if hasattr(xllamacpp, "get_system_info") else ""
    info["system_info"] = str(system).strip()
    info["features"] = _engine_features(str(system))
    devices = xllamacpp.get_device_info() if hasattr(xllamacpp, "get_device_info") else []
    info["backends"] = sorted({_device_kind(d) for d in devices} | {"cpu"})
    info["gpus"] = [_gpu(d) for d in devices if _device_kind(d) in ("gpu", "igpu")]
    return info


def _engine_features(system_info: str) -> list[str]:
    """`CPU : AVX2 = 1 | FMA = 1 | ...` → ["AVX2", "FMA", ...] (the ones switched on)."""
    found = []
    for part in system_info.replace(":", "|").split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1":
            found.append(name.strip())
    return found


def _device_kind(device: dict[str, Any]) -> str:
    """cpu, gpu, igpu (a GPU in the host's RAM), or accel (BLAS, AMX: helps the CPU, no memory)."""
    kind = str(device.get("type", "")).upper()
    for name in ("IGPU", "GPU", "ACCEL"):
        if kind.endswith(name) or f"TYPE_{name}" in kind:
            return name.lower()
    return "cpu"


def _gpu(device: dict[str, Any]) -> GPU:
    description = str(device.get("description") or device.get("name") or "")
    return GPU(
        name=str(device.get("name") or ""),
        description=description,
        total=int(device.get("memory_total") or 0),
        free=int(device.get("memory_free") or 0),
        kind=_device_kind(device),
        bandwidth_gbs=known_gpu_bandwidth(description),
    )


#: Published memory bandwidth (GB/s) of common chips; the device list does not say it.
_GPU_BANDWIDTH = (
    ("H200", 4800.0),
    ("H100", 3350.0),
    ("A100", 1900.0),
    ("RTX 5090", 1790.0),
    ("RTX 4090", 1008.0),
    ("RTX 4080", 717.0),
    ("RTX 4070", 504.0),
    ("RTX 4060", 272.0),
    ("RTX 3090", 936.0),
    ("RTX 3080", 760.0),
    ("RTX 3070", 448.0),
    ("RTX 3060", 360.0),
    ("L40", 864.0),
    ("A6000", 768.0),
    ("T4", 320.0),
    ("M1 Max", 400.0),
    ("M1 Pro", 200.0),
    ("M2 Max", 400.0),
    ("M2 Pro", 200.0),
    ("M3 Max", 400.0),
    ("M3 Pro", 150.0),
    ("M4 Max", 546.0),
    ("M4 Pro", 273.0),
    ("Ultra", 800.0),
    ("Apple M", 100.0),
)


def known_gpu_bandwidth(description: str) -> float | None:
    text = description.lower()
    return next((gbs for name, gbs in _GPU_BANDWIDTH if name.lower() in text), None)


def measure_bandwidth(seconds: float = BANDWIDTH_SECONDS, size: int = BANDWIDTH_BUFFER) -> float:
    """RAM bandwidth in GB/s (bytes read plus bytes written per second), by copying a buffer
    much larger than the caches for about `seconds`.

    Why it matters: to make one token, a CPU reads every weight once, so decode can be no
    faster than bandwidth / model size; the planner predicts from this figure. It is a
    single-threaded copy, so it understates what all cores together draw (the planner's
    efficiency factor accounts for that).
    """
    source = bytearray(os.urandom(1 << 16)) * (size >> 16)
    target = bytearray(len(source))
    src, dst = memoryview(source), memoryview(target)
    dst[:] = src  # first touch: the pages are mapped before the clock starts
    copies = 0
    start = time.perf_counter()
    while True:
        dst[:] = src
        copies += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return round(2 * copies * len(source) / elapsed / GB, 1)


def bandwidth_now(seconds: float = BANDWIDTH_NOW_SECONDS, size: int = BANDWIDTH_BUFFER) -> float:
    """The same copy, just now: the median of each copy's rate over `seconds`, so a moment when
    other programs paused (or all woke at once) does not decide the figure alone."""
    source = bytearray(os.urandom(1 << 16)) * (size >> 16)  # zeros would read the one zero page
    target = bytearray(len(source))
    src, dst = memoryview(source), memoryview(target)
    dst[:] = src
    rates: list[float] = []
    start = last = time.perf_counter()
    while last - start < seconds or len(rates) < 3:
        dst[:] = src
        now = time.perf_counter()
        rates.append(2 * size / max(now - last, 1e-9) / GB)
        last = now
    return round(statistics.median(rates), 1)


#: Where the last bandwidth measurement is kept, so `cove fit` and `cove list` need not wait.
BANDWIDTH_FILE = "machine.json"
BANDWIDTH_MAX_AGE_S = 7 * 86400


def remembered_bandwidth(home: Path) -> float | None:
    """The bandwidth measured here in the last week, if any."""
    try:
        data = json.loads((home / BANDWIDTH_FILE).read_text("utf-8"))
        fresh = time.time() - float(data["measured_at"]) < BANDWIDTH_MAX_AGE_S
        return float(data["bandwidth_gbs"]) if fresh and data["bandwidth_gbs"] > 0 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_bandwidth(home: Path, gbs: float) -> None:
    from .store.atomic import atomic_write_bytes

    record = {"bandwidth_gbs": gbs, "measured_at": time.time()}
    # A read-only or full store: measure again next time.
    with contextlib.suppress(OSError, CoveError):
        atomic_write_bytes(home / BANDWIDTH_FILE, json.dumps(record).encode())


def this_machine(home: Path, fresh: bool = False) -> Machine:
    """This machine now, with the remembered bandwidth unless `fresh` (then measured). The
    figure kept is the best of the week: one measured while other programs ran understates
    the machine, and what they take now is the short copy's to say (`bandwidth_now_gbs`)."""
    known = remembered_bandwidth(home)
    described = describe(home, measure=fresh or known is None)
    # The short copy just now counts too: one that caught a quiet instant shows the machine.
    best = max(known or 0.0, described.bandwidth_gbs or 0.0, described.bandwidth_now_gbs or 0.0)
    if best and best != known:
        remember_bandwidth(home, best)
    return replace(described, bandwidth_gbs=best or None)
