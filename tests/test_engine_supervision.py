"""Supervising engine processes (fake engine, fake clock): a crash at load backs off and then marks
the model broken until its file changes; a crash after a good load restarts at once the first
time and backs off after; a dead engine is never listed as loaded."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEngine, FakeModel
from server_fixtures import client, make_app

from cove.engine import process
from cove.engine.base import LoadSpec
from cove.engine.memory import GIB
from cove.engine.process import IsolatedModel
from cove.engine.scheduler import ModelRequest, Scheduler
from cove.errors import EngineBackingOff, EngineCrashed, ModelBroken, ShuttingDown
from cove.library.local import Cove

INFO: dict[str, Any] = {"block_count": 1, "head_count": 1, "embedding_length": 64}
WHY = "it was killed by SIGABRT (llama.cpp:12: GGML_ASSERT(n_layer > 0) failed)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CrashingEngine:
    """The fake engine, except that models named in `crash` die before their handshake."""

    def __init__(self, engine: FakeEngine, crash: set[str]) -> None:
        self.engine = engine
        self.crash = crash
        self.attempts: list[str] = []

    def __call__(self, spec: LoadSpec) -> FakeModel:
        self.attempts.append(spec.name)
        if spec.name in self.crash:
            message = f"the engine for {spec.name} stopped while loading: {WHY}"
            raise EngineCrashed(message, why=WHY, loading=True)
        return self.engine(spec)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def crashing(engine: FakeEngine) -> CrashingEngine:
    return CrashingEngine(engine, {"bad:latest"})


@pytest.fixture
def scheduler(crashing: CrashingEngine, clock: Clock) -> Iterator[Scheduler]:
    made = Scheduler(crashing, free_memory=lambda: 64 * GIB, clock=clock)
    made._start_reaper = lambda: None  # type: ignore[method-assign]
    yield made
    made.close()


def request(tmp_path: Path, name: str) -> ModelRequest:
    path = tmp_path / f"{name}.gguf"
    if not path.exists():
        path.write_bytes(b"GGUF" + name.encode())
    spec = LoadSpec(name=f"{name}:latest", model_path=path, digest=name * 8, num_ctx=256)
    return ModelRequest(spec, INFO, 10_000_000)


def use(scheduler: Scheduler, req: ModelRequest) -> Any:
    with scheduler.use(req) as model:
        return model


def test_a_crash_at_load_backs_off_then_marks_the_model_broken(
    scheduler: Scheduler, crashing: CrashingEngine, clock: Clock, tmp_path: Path
) -> None:
    bad = request(tmp_path, "bad")
    with pytest.raises(EngineCrashed, match="stopped while loading"):
        use(scheduler, bad)
    clock.now += 0.5  # within the first back-off: refused at once, no process started
    with pytest.raises(EngineBackingOff, match=r"bad:latest: its engine crashed loading it .*retry"):
        use(scheduler, bad)
    assert crashing.attempts == ["bad:latest"]
    clock.now += 0.6
    with pytest.raises(EngineCrashed):
        use(scheduler, bad)
    clock.now += 3600  # however long after: broken, until the file changes
    for _ in range(3):
        with pytest.raises(ModelBroken) as broken:
            use(scheduler, bad)
    assert str(broken.value) == (
        f"bad:latest: the engine crashed loading this model file ({WHY}); "
        "it stays off until the file changes or cove restarts"
    )
    assert crashing.attempts == ["bad:latest"] * 2
    assert use(scheduler, request(tmp_path, "good"))  # every other model carries on


def test_an_engine_killed_while_loading_is_not_the_files_fault(
    scheduler: Scheduler, crashing: CrashingEngine, clock: Clock, tmp_path: Path
) -> None:
    """SIGKILL comes from outside (a person, the kernel out of memory): retried, never broken."""
    killed = "it was killed by SIGKILL"

    def kill(spec: LoadSpec) -> FakeModel:
        crashing.attempts.append(spec.name)
        raise EngineCrashed(
            f"the engine for {spec.name} stopped while loading: {killed}",
            why=killed,
            loading=True,
            killed=True,
        )

    scheduler._factory = kill  # type: ignore[assignment]
    bad = request(tmp_path, "bad")
    for _ in range(4):
        with pytest.raises(EngineCrashed):
            use(scheduler, bad)
        clock.now += 120  # past any back-off
    assert crashing.attempts == ["bad:latest"] * 4  # started each time: never marked broken


def test_a_broken_model_gets_a_fresh_start_when_its_file_changes(
    scheduler: Scheduler, crashing: CrashingEngine, clock: Clock, tmp_path: Path
) -> None:
    bad = request(tmp_path, "bad")
    for _ in range(2):
        with pytest.raises(EngineCrashed):
            use(scheduler, bad)
        clock.now += 10
    with pytest.raises(ModelBroken):
        use(scheduler, bad)
    stat = os.stat(bad.spec.model_path)
    os.utime(bad.spec.model_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    crashing.crash.clear()  # the file was fixed
    assert use(scheduler, bad)
    assert crashing.attempts == ["bad:latest"] * 3


def test_a_file_that_loads_after_one_crash_is_not_counted_towards_broken(
    scheduler: Scheduler, crashing: CrashingEngine, clock: Clock, tmp_path: Path
) -> None:
    """One crash at load can be the machine's (an OOM kill); a good load clears it."""
    bad = request(tmp_path, "bad")
    with pytest.raises(EngineCrashed):
        use(scheduler, bad)
    clock.now += 2
    crashing.crash.clear()
    use(scheduler, bad)
    scheduler.stop("bad:latest")
    crashing.crash.add("bad:latest")
    with pytest.raises(EngineCrashed):
        use(scheduler, bad)
    clock.now += 2
    with pytest.raises(EngineCrashed):  # a second crash in all, but the first of this run
        use(scheduler, bad)


def test_a_crash_after_a_good_load_restarts_at_once_then_backs_off(
    scheduler: Scheduler, crashing: CrashingEngine, clock: Clock, tmp_path: Path
) -> None:
    good = request(tmp_path, "good")
    first = use(scheduler, good)
    first.alive = False  # killed once (kill -9): the next request gets a fresh engine at once
    with scheduler.use(good) as second:
        assert isinstance(second, FakeModel) and second is not first
        second.alive = False  # and this request's engine dies too, before it is served
    with pytest.raises(EngineBackingOff, match=r"good:latest: its engine crashed 2 times in a row"):
        use(scheduler, good)
    clock.now += 1.1
    third = use(scheduler, good)  # served: the run of crashes is over
    assert third.alive and len(crashing.attempts) == 3
    third.alive = False
    assert use(scheduler, good) is not third  # at once again


def test_a_dead_engine_is_never_listed_as_loaded(
    scheduler: Scheduler, engine: FakeEngine, tmp_path: Path
) -> None:
    """An engine process can die with no request on it (the OOM killer, kill -9): ps drops it."""
    model = use(scheduler, request(tmp_path, "good"))
    assert [r.spec.name for r in scheduler.loaded()] == ["good:latest"]
    model.alive = False
    assert scheduler.loaded() == []
    assert [spec.name for spec in engine.closed] == ["good:latest"]


@pytest.fixture
def crashing_cove(fake_cove: Cove, engine: FakeEngine) -> Cove:
    fake_cove.scheduler._factory = CrashingEngine(engine, {"tiny:latest"})
    return fake_cove


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.mark.anyio
async def test_the_api_answers_a_crash_500_a_back_off_503_and_broken_500(
    crashing_cove: Cove, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client(make_app(crashing_cove)) as c:
        crashed = await c.post("/api/chat", json=CHAT)
        backing_off = await c.post("/v1/chat/completions", json={**CHAT, "model": "tiny"})
        monkeypatch.setattr("cove.engine.crashes.BACKOFF_S", 0.0)
        await c.post("/api/chat", json=CHAT)
        broken = await c.post("/api/chat", json=CHAT)
    assert crashed.status_code == 500
    assert crashed.json()["error"] == f"the engine for tiny:latest stopped while loading: {WHY}"
    assert backing_off.status_code == 503 and backing_off.headers["retry-after"]
    assert "its engine crashed loading it" in backing_off.json()["error"]["message"]
    assert broken.status_code == 500
    assert "it stays off until the file changes" in broken.json()["error"]


def test_no_model_is_started_once_the_scheduler_is_closing(
    scheduler: Scheduler, crashing: CrashingEngine, tmp_path: Path
) -> None:
    """On SIGTERM the server closes the scheduler while requests may still come in on open
    connections: they are answered 503, and no engine process is started to be left behind."""
    scheduler.close()
    with pytest.raises(ShuttingDown, match="cove is shutting down"):
        use(scheduler, request(tmp_path, "good"))
    assert crashing.attempts == []


def test_a_model_that_finishes_loading_after_the_scheduler_closed_is_not_kept(
    engine: FakeEngine, clock: Clock, tmp_path: Path
) -> None:
    def load_while_closing(spec: LoadSpec) -> FakeModel:
        closing.close()  # SIGTERM arrives while the engine loads
        return engine(spec)

    closing = Scheduler(load_while_closing, free_memory=lambda: 64 * GIB, clock=clock)
    with pytest.raises(ShuttingDown, match="not kept loaded"):
        use(closing, request(tmp_path, "good"))
    assert [spec.name for spec in engine.closed] == ["good:latest"]
    assert closing.loaded() == []


def test_shutdown_ends_an_engine_process_still_loading(tmp_path: Path) -> None:
    """A model file that never finishes opening (a FIFO nobody writes) holds the engine in its
    load, as a big model would for minutes: stop_loading ends it at once."""
    never = tmp_path / "never.gguf"
    os.mkfifo(never)
    spec = LoadSpec(name="never:latest", model_path=never, digest="0" * 64, num_ctx=256, template="{{ x }}")
    failures: list[BaseException] = []

    def load() -> None:
        try:
            IsolatedModel(spec)
        except BaseException as exc:
            failures.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    deadline = time.monotonic() + 30
    while not process._LOADING and time.monotonic() < deadline:
        time.sleep(0.05)
    (loading,) = list(process._LOADING)
    time.sleep(1.0)  # it is in the engine's load by now (and would stay there)
    started = time.monotonic()
    try:
        process.stop_loading()
        loader.join(timeout=10)
        assert not loader.is_alive() and time.monotonic() - started < 5
    finally:
        loading._process.kill()  # a failed test leaves no process behind (no-op when it ended)
    (failure,) = failures
    assert isinstance(failure, ShuttingDown) and "never:latest was not loaded" in str(failure)
    assert loading._process.poll() is not None
