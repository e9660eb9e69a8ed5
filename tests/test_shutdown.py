"""Stopping a real `cove serve` (SIGTERM, or Ctrl-C at its terminal) with engine processes and
streams in flight: it exits within seconds, leaves no engine process behind, and every client's
stream ends instead of hanging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from server_fixtures import RealServer, _wait_until_up, cove_script, free_port, linked_home

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
#: Long enough that no stream finishes on its own before the signal.
LONG = {"num_predict": 4000, "temperature": 1.0}
EXIT_WITHIN_S = 10.0


@pytest.fixture
def server(model_home: Path, tmp_path: Path) -> Iterator[RealServer]:
    """A `cove serve` of its own (it is stopped by the test), in a session of its own so a Ctrl-C
    can reach its whole process group as a terminal's would."""
    home = linked_home(model_home, tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env.update({"COVE_HOME": str(home), "COVE_ENGINE": "process"})
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(cove_script()), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RealServer(f"http://127.0.0.1:{port}", home, process, log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Stream(threading.Thread):
    """A client reading one long streamed answer until the server ends it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.started = threading.Event()
        self.chunks = 0
        self.last = ""
        self.ended: str | None = None  # how it ended: "done" or the transport error

    def run(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}]}
        try:
            with httpx.stream(
                "POST", self.url + "/api/chat", json={**body, "options": LONG}, timeout=60
            ) as reply:
                for line in reply.iter_lines():
                    if line:
                        self.chunks += 1
                        self.last = line
                        self.started.set()
            self.ended = "done"
        except httpx.HTTPError as exc:
            self.ended = type(exc).__name__


def engine_processes(server: RealServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [c for c in children if "cove.engine.child" in " ".join(c.cmdline())]


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_the_server_with_streams_in_flight(server: RealServer, how: str) -> None:
    streams = [Stream(server.url) for _ in range(2)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(120), server.log_tail()
    engines = engine_processes(server)
    assert engines, "the model runs in an engine process"

    started = time.monotonic()
    if how == "SIGTERM":
        server.process.send_signal(signal.SIGTERM)
    else:  # a terminal sends SIGINT to the whole foreground process group
        os.killpg(server.process.pid, signal.SIGINT)
    try:
        status = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cove serve did not exit 30 s after {how}:\n{server.log_tail()}")
    took = time.monotonic() - started

    assert took < EXIT_WITHIN_S, f"{how}: exited after {took:.1f} s"
    # A SIGTERM is a service manager's request to stop: done, it exits 0. Ctrl-C exits 130, as
    # for any cove command. Neither dies of its signal before cove has shut down.
    assert status == (0 if how == "SIGTERM" else 130), server.log_tail()
    assert "cove stopped" in server.log_tail()
    for stream in streams:
        stream.join(timeout=5)
        assert not stream.is_alive(), "a client's stream hangs after the server exited"
        # It ends in the API's own shape, saying why, rather than being cut off.
        assert stream.ended == "done", stream.ended
        assert json.loads(stream.last) == {
            "error": "the engine for gemma3:270m was stopped: cove is shutting down"
        }
    deadline = time.monotonic() + 5
    while not all(gone(e) for e in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(e) for e in engines), [e.pid for e in engines if not gone(e)]
    assert "Traceback" not in server.log_tail(), server.log_tail()
