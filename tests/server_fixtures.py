"""Helpers for the server tests: apps on the fake engine, a live uvicorn thread, a real `cove serve`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fakes import FakeEngine, FakeModel
from gguf_writer import write_gguf

from cove.config import Settings
from cove.engine.base import ChunkCallback, LoadSpec
from cove.library.local import Cove
from cove.server.app import build_app
from cove.server.guard import Policy

BASE_URL = "http://127.0.0.1:11435"
ASGIApp = Callable[..., Any]

EMBEDDER_METADATA: dict[str, Any] = {
    "general.architecture": "bert",
    "general.name": "embedder",
    "bert.context_length": 512,
    "bert.block_count": 1,
    "bert.embedding_length": 8,
    "bert.attention.head_count": 2,
    "general.file_type": 1,
    "tokenizer.ggml.tokens": ["a", "b"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(cove: Cove, **policy: Any) -> ASGIApp:
    """The server's ASGI app for `cove`, behind a loopback Policy with the given overrides."""
    return build_app(cove, Policy(**{"bind_host": "127.0.0.1", **policy}))


def client(app: ASGIApp, raise_app_exceptions: bool = True, **kwargs: Any) -> httpx.AsyncClient:
    """An in-process client; responses are buffered whole, so it cannot test disconnects.

    Unexpected exceptions are re-raised into the test unless `raise_app_exceptions` is False,
    which shows the 500 the server answers with instead.
    """
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, **kwargs)


def tiny_cove(home: Path, engine: FakeEngine, **settings: Any) -> Cove:
    """A Cove on the fake engine with its own settings and `tiny:latest` stored."""
    cove = Cove(Settings(home=home, **settings), factory=engine)
    path = write_gguf(home.parent / "tiny-own.gguf")
    cove.store.import_gguf(path, "tiny", source="test")
    return cove


def add_embedder(cove: Cove, name: str = "embedder") -> None:
    """Store a tiny bert GGUF: llama.cpp runs that architecture only as an embedder."""
    path = write_gguf(cove.store.home.parent / "embedder.gguf", EMBEDDER_METADATA)
    cove.store.import_gguf(path, name, source="test")


def words(count: int, prefix: str = "w") -> str:
    """A user message the fake engine answers with `count + 2` tokens ("You said:" + words)."""
    return " ".join(f"{prefix}{i}" for i in range(count))


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll until true; the timeout only stops a broken test from hanging, it asserts no speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


# -- a fake engine that records how each generation ended -----------------------------------


@dataclass
class Outcome:
    finish_reason: str | None
    sent: int


@dataclass
class TrackingEngine(FakeEngine):
    """A FakeEngine that records how each streamed generation ended, and can hold every
    generation at a gate until the test opens it (to fill slots and queues without timing)."""

    outcomes: list[Outcome] = field(default_factory=list)
    gate: threading.Event | None = None

    def __call__(self, spec: LoadSpec) -> FakeModel:
        with self.lock:
            self.loads.append(spec)
        return _TrackingModel(self, spec)


class _TrackingModel(FakeModel):
    engine: TrackingEngine

    def chat(self, body: dict[str, Any], on_chunk: ChunkCallback | None = None) -> dict[str, Any]:
        if self.engine.gate is not None:
            assert self.engine.gate.wait(timeout=30), "the test never opened the gate"
        if on_chunk is None:
            return super().chat(body, None)
        finish: list[str | None] = [None]

        def watch(chunk: dict[str, Any]) -> bool:
            for choice in chunk.get("choices") or []:
                finish[0] = choice.get("finish_reason") or finish[0]
            return on_chunk(chunk)

        result = super().chat(body, watch)
        sent = int(result["usage"]["completion_tokens"])
        with self.engine.lock:
            self.engine.outcomes.append(Outcome(finish[0], sent))
        return result

    complete = chat


# -- the app on a real socket, in a thread ----------------------------------------------------


class LiveServer:
    """`with LiveServer(app) as url:` serves `app` with uvicorn on a free loopback port."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn to start")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# -- a real `cove serve` subprocess on the bundled model -----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _link(src: str, dst: str) -> None:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)


def linked_home(model_home: Path, target: Path) -> Path:
    """A private COVE_HOME whose blobs are hard links to the session's imported model."""
    shutil.copytree(model_home, target, copy_function=_link, dirs_exist_ok=True)
    return target


@dataclass
class RealServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text("utf-8", errors="replace")[-4000:]


def cove_script() -> Path:
    return Path(sys.executable).parent / "cove"


def start_serve(home: Path, folder: Path, **env: str) -> RealServer:
    """A real `cove serve` on a free loopback port over `home`, its log in `folder`, up when this
    returns; none of the caller's COVE_ settings or other servers' keys leak into it."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COVE_") and k not in ("HF_TOKEN", "OLLAMA_HOST", "OLLAMA_API_KEY")
    }
    environment.update({"COVE_HOME": str(home), **env})
    port = free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(cove_script()), "serve", "--port", str(port)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = RealServer(f"http://127.0.0.1:{port}", home, process, log)
    _wait_until_up(server)
    return server


@pytest.fixture(scope="session")
def _real_servers(
    model_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RealServer]]:
    """Starts `cove serve` processes on demand (one per env), stops them at the end of the session."""
    started: dict[tuple[tuple[str, str], ...], RealServer] = {}

    def start(**env: str) -> RealServer:
        key = tuple(sorted(env.items()))
        if key in started:
            return started[key]
        folder = tmp_path_factory.mktemp("real-server")
        server = start_serve(linked_home(model_home, folder / "home"), folder, **env)
        started[key] = server
        return server

    yield start
    for server in started.values():
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def _wait_until_up(server: RealServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"cove serve exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"cove serve did not answer within {timeout}s:\n{server.log_tail()}")


@pytest.fixture
def real_server(_real_servers: Callable[..., RealServer]) -> RealServer:
    """A `cove serve` on the bundled gemma3:270m with default settings, shared by the session."""
    return _real_servers()


@pytest.fixture
def single_slot_server(_real_servers: Callable[..., RealServer]) -> RealServer:
    """A second `cove serve` whose model has one slot (COVE_NUM_PARALLEL=1)."""
    return _real_servers(COVE_NUM_PARALLEL="1")
