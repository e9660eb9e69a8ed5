"""A model in its own engine process: a hostile model file or an engine crash costs that model's
requests, never the process that serves everything else."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest
from server_fixtures import RealServer, _real_servers, real_server

from cove.config import Settings
from cove.engine.process import IsolatedModel
from cove.errors import CoveError, DoesNotFit, EngineBackingOff, EngineCrashed, EngineError, ModelBroken
from cove.library.local import Cove

__all__ = ["_real_servers", "real_server"]
pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
HI = [{"role": "user", "content": "Hi"}]
SHORT = {"num_predict": 4, "temperature": 0}


def patched_copy(source: Path, target: Path, key: str, value: int) -> Path:
    """The bundled model with one uint32 metadata value changed in place: structurally valid,
    so cove's validator accepts it, but a value llama.cpp asserts on."""
    shutil.copyfile(source, target)
    with target.open("r+b") as f:
        head = f.read(8 << 20)
        name = key.encode()
        at = head.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
        (kind,) = struct.unpack("<I", head[at : at + 4])
        assert kind == 4, f"{key} is not a uint32 here"  # GGUF type 4: UINT32
        f.seek(at + 4)
        f.write(struct.pack("<I", value))
    return target


@pytest.fixture
def isolated(real_home: Path) -> Iterator[Cove]:
    with Cove(Settings.from_env(), factory=IsolatedModel) as cove:
        yield cove


def hostile(cove: Cove, tmp_path: Path, name: str, key: str, value: int) -> str:
    source = cove.store.model_path(cove.model(MODEL))
    path = patched_copy(source, tmp_path / f"{name}.gguf", key, value)
    cove.store.import_gguf(path, name, source="test")
    cove.create(name, f"FROM {name}\nTEMPLATE gemma\n")
    return name


def test_an_isolated_model_answers_as_the_in_process_one_does(isolated: Cove, real_home: Path) -> None:
    whole = isolated.chat(MODEL, HI, options=SHORT)
    streamed = list(isolated.stream_chat(MODEL, HI, options=SHORT))
    assert whole.content and whole.completion_tokens == 4
    assert "".join(c.content for c in streamed) == whole.content
    with Cove(Settings.from_env()) as in_process:
        assert in_process.chat(MODEL, HI, options=SHORT).content == whole.content


def test_a_model_that_aborts_at_load_fails_alone(isolated: Cove, tmp_path: Path) -> None:
    name = hostile(isolated, tmp_path, "no-blocks", "gemma3.block_count", 0)
    with pytest.raises(EngineError, match=r"the engine for no-blocks:latest stopped while loading"):
        isolated.chat(name, HI, options=SHORT)
    assert isolated.chat(MODEL, HI, options=SHORT).content  # this process is alive and well


def test_a_model_that_crashes_at_load_backs_off_then_stays_off_until_its_file_changes(
    isolated: Cove, tmp_path: Path
) -> None:
    name = hostile(isolated, tmp_path, "no-blocks", "gemma3.block_count", 0)
    with pytest.raises(EngineCrashed, match=r"stopped while loading: it was killed by SIGABRT"):
        isolated.chat(name, HI, options=SHORT)
    started = time.monotonic()
    with pytest.raises(EngineBackingOff, match=r"no-blocks:latest: its engine crashed loading it"):
        isolated.chat(name, HI, options=SHORT)
    assert time.monotonic() - started < 0.5  # refused at once: no process was started
    time.sleep(1.1)
    with pytest.raises(EngineCrashed):
        isolated.chat(name, HI, options=SHORT)
    broken = r"^no-blocks:latest: the engine crashed loading this model file \(it was killed by SIGABRT"
    with pytest.raises(ModelBroken, match=broken):
        isolated.chat(name, HI, options=SHORT)
    blob = isolated.store.model_path(isolated.model(name))
    os.utime(blob)  # the file changed (as far as cove can tell): it gets a fresh try
    with pytest.raises(EngineCrashed):
        isolated.chat(name, HI, options=SHORT)
    assert isolated.chat(MODEL, HI, options=SHORT).content


def test_a_crash_mid_request_spares_the_other_stream(isolated: Cove, tmp_path: Path) -> None:
    """context_length 0 loads, then llama.cpp aborts at the first request (SIGABRT)."""
    name = hostile(isolated, tmp_path, "no-context", "gemma3.context_length", 0)
    healthy = iter(isolated.stream_chat(MODEL, HI, options={"num_predict": 40, "temperature": 0}))
    first = next(healthy)
    failures: list[BaseException] = []

    def ask_the_hostile_one() -> None:
        try:
            isolated.chat(name, HI, options=SHORT)
        except CoveError as exc:
            failures.append(exc)

    worker = threading.Thread(target=ask_the_hostile_one)
    worker.start()
    rest = list(healthy)
    worker.join(timeout=120)
    assert rest and rest[-1].done and rest[-1].completion_tokens == 40  # the healthy stream finished
    assert "".join(c.content for c in [first, *rest])
    (failure,) = failures
    assert isinstance(failure, EngineError)
    assert str(failure).startswith("the engine for no-context:latest stopped: it was killed by SIGABRT")


def test_a_killed_engine_is_restarted_on_the_next_request(isolated: Cove) -> None:
    assert isolated.chat(MODEL, HI, options=SHORT).content
    (runner,) = isolated.scheduler.loaded()
    model = runner.model
    assert isinstance(model, IsolatedModel)
    os.kill(model._process.pid, signal.SIGKILL)
    with pytest.raises(EngineError, match=r"the engine for gemma3:270m stopped: it was killed by SIGKILL"):
        isolated.chat(MODEL, HI, options=SHORT)
    assert isolated.chat(MODEL, HI, options=SHORT).content  # a fresh engine process
    (again,) = isolated.scheduler.loaded()
    assert again.model is not model


def test_an_engine_killed_before_its_first_request_says_why(isolated: Cove) -> None:
    """The first request reaches the engine for its template (/props); a dead engine met there
    is reported as stopped, and why, not as a connection reset."""
    isolated.preload(MODEL)
    (runner,) = isolated.scheduler.loaded()
    os.kill(runner.model._process.pid, signal.SIGKILL)
    with pytest.raises(EngineError, match=r"the engine for gemma3:270m stopped: it was killed by SIGKILL"):
        isolated.chat(MODEL, HI, options=SHORT)


def test_requests_on_an_engine_that_died_and_was_dropped_say_how_it_died(isolated: Cove) -> None:
    """The scheduler closes a dead engine while requests may still hold it: they are told it
    was killed, not that cove is shutting down, and never meet a closed HTTP client."""
    assert isolated.chat(MODEL, HI, options=SHORT).content  # past its first request: straight to HTTP
    (runner,) = isolated.scheduler.loaded()
    model = runner.model
    assert isinstance(model, IsolatedModel)
    os.kill(model._process.pid, signal.SIGKILL)
    model._process.wait(timeout=10)
    assert isolated.scheduler.loaded() == []  # dropped, and so closed
    for call in (lambda: model.chat({"messages": HI, "max_tokens": 2}), model._stopped):
        with pytest.raises(EngineCrashed, match=r"stopped: it was killed by SIGKILL"):
            error = call()
            raise error if isinstance(error, BaseException) else AssertionError(error)


def test_an_engine_killed_while_idle_is_not_listed_as_loaded(isolated: Cove) -> None:
    assert isolated.chat(MODEL, HI, options=SHORT).content
    (runner,) = isolated.scheduler.loaded()
    assert isinstance(runner.model, IsolatedModel)
    runner.model._process.kill()
    runner.model._process.wait(timeout=10)
    assert isolated.loaded() == []  # what /api/ps answers from
    assert isolated.chat(MODEL, HI, options=SHORT).content  # a killed engine restarts at once


def limits_of(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


def test_an_engine_process_runs_under_a_memory_bound(isolated: Cove) -> None:
    """RLIMIT_DATA, sized from the estimate; the weights (a read-only map of the file) are not in it."""
    assert isolated.chat(MODEL, HI, options=SHORT).content
    (runner,) = isolated.scheduler.loaded()
    assert isinstance(runner.model, IsolatedModel)
    pid = runner.model._process.pid
    limit = runner.spec.memory_limit
    assert limit > 2 * runner.size
    assert f"Max data size             {limit}" in limits_of(pid)
    blob = str(isolated.store.model_path(isolated.model(MODEL)))
    weights = [line.split()[1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if blob in line]
    assert weights and all("w" not in perms for perms in weights)


def test_an_engine_past_its_memory_bound_stops_alone(isolated: Cove) -> None:
    request, _, _ = isolated.prepare(MODEL)
    starved = replace(request.spec, num_parallel=1, memory_limit=64 << 20)
    # Killed by the kernel, or refused a thread or an allocation it reports: either way it alone stops.
    stopped = r"stopped while loading: it was killed by|could not load gemma3:270m within the 64 MiB"
    with pytest.raises(EngineError, match=rf"^the engine (for gemma3:270m )?({stopped})"):
        IsolatedModel(starved)
    assert isolated.chat(MODEL, HI, options=SHORT).content  # this process is alive and well


def test_a_request_past_the_engines_memory_bound_fails_alone(isolated: Cove) -> None:
    """The bound tightened to 40 MiB above what the loaded engine holds: an 8 MiB message (the
    engine copies it while parsing and rendering) fails with a clear error, and the engine lives."""
    assert isolated.chat(MODEL, HI, options=SHORT).content
    (runner,) = isolated.scheduler.loaded()
    model = runner.model
    assert isinstance(model, IsolatedModel)
    engine = psutil.Process(model._process.pid)
    held = int(Path(f"/proc/{engine.pid}/status").read_text().split("VmData:")[1].split()[0]) * 1024
    engine.rlimit(psutil.RLIMIT_DATA, (held + (40 << 20), held + (40 << 20)))
    huge = {"messages": [{"role": "user", "content": "x" * (8 << 20)}], "max_tokens": 1}
    with pytest.raises(
        DoesNotFit, match=r"^gemma3:270m: this request needs more memory than its engine may use"
    ):
        model._call("chat", huge, None)  # the engine's own transport: cove's checks would refuse it first
    assert model.alive
    assert isolated.chat(MODEL, HI, options=SHORT).content


def test_cove_serve_runs_each_model_in_its_own_process(real_server: RealServer) -> None:
    """COVE_ENGINE=auto: under `cove serve` the server process holds no engine, its children do."""
    reply = httpx.post(
        real_server.url + "/api/chat",
        json={"model": MODEL, "messages": HI, "stream": False, "options": SHORT},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    children = psutil.Process(real_server.process.pid).children(recursive=True)
    engines = [c for c in children if "cove.engine.child" in " ".join(c.cmdline())]
    assert len(engines) == 1
