"""A model in its own engine process, spoken to over the engine's loopback OpenAI-compatible API.

What llama.cpp does to itself (an assert on a hostile model file, an abort, a hang) it does to
that process only: the requests on that model fail with "the engine for NAME stopped: …", the
scheduler drops the dead model, and the next request starts a fresh process (with a back-off,
and a file that crashes at load is marked broken: engine/crashes.py). Every other model and
stream carries on. The process runs under a memory bound (child.py). The request logic (tools,
forced calls, embedding fit) is the in-process engine's own, inherited; only the transport differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from ..errors import BadRequest, CoveError, DoesNotFit, EngineCrashed, EngineError, ShuttingDown
from .base import ChunkCallback, LoadSpec
from .child import spec_to_json
from .llamacpp import LlamaCppModel, engine_client, raise_engine_error

#: How long a model may take to load before its process is given up on.
LOAD_TIMEOUT_S = 600.0
PATHS = {
    "chat": "/v1/chat/completions",
    "complete": "/v1/completions",
    "embed": "/v1/embeddings",
    "rerank": "/v1/rerank",
}


class IsolatedModel(LlamaCppModel):
    """LlamaCppModel's requests, sent to a child process that holds the engine."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._closed = False
        self._ended_by_us = False  # closed by cove while its process still ran
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()
        self._errors: deque[str] = deque(maxlen=40)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cove.engine.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # On an assert ggml would attach gdb for a backtrace: seconds of output nobody reads.
            env={**os.environ, "GGML_NO_BACKTRACE": "1"},
        )
        self._log = threading.Thread(target=self._keep_errors, name="cove-engine-log", daemon=True)
        self._log.start()
        with _LOADING_LOCK:
            _LOADING.add(self)
        try:
            hello = self._handshake()
        finally:
            with _LOADING_LOCK:
                _LOADING.discard(self)
        self.no_tools: str | None = hello.get("no_tools")
        self._address = str(hello["address"])
        self._secret = str(hello["secret"])
        self._http = engine_client(self._address, self._secret, httpx.Timeout(None, connect=10))
        # An embedder's other engines (llamacpp.py's embed spreads its inputs over them).
        others = [
            engine_client(a, self._secret, httpx.Timeout(None, connect=10)) for a in hello.get("others") or []
        ]
        self._others, self.engines = tuple(others), 1 + len(others)
        self._pool = ThreadPoolExecutor(len(others), "cove-embed") if others else None

    @property
    def pid(self) -> int:
        """The engine process's id: its memory is measured by it."""
        return self._process.pid

    @property  # LlamaCppModel's plain `alive = True` cannot change; this one asks the process
    def alive(self) -> bool:  # type: ignore[override]
        """Its process is running (it may have died since the last request, with none on it)."""
        return not self._closed and self._process.poll() is None

    @property
    def address(self) -> str:
        return self._address

    @property
    def secret(self) -> str:
        return self._secret

    def _handshake(self) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(spec_to_json(self.spec) + "\n")
        self._process.stdin.flush()
        ready, _, _ = select.select([self._process.stdout], [], [], LOAD_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self._stop_process()  # so that how it ended is known
            if self._closed:
                raise ShuttingDown(f"cove is shutting down; {self.spec.name} was not loaded")
            why = self._why() if ready else f"it did not load within {LOAD_TIMEOUT_S:.0f} s"
            message = f"the engine for {self.spec.name} stopped while loading: {why}"
            killed = self._process.returncode == -signal.SIGKILL
            raise EngineCrashed(message, why=why, loading=True, killed=killed)
        hello: dict[str, Any] = json.loads(line)
        if "error" in hello:
            self._stop_process()
            raise EngineError(str(hello["error"]))
        return hello

    def _keep_errors(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            if line.strip():
                self._errors.append(line.strip())

    def _call(
        self, kind: str, body: dict[str, Any], on_chunk: ChunkCallback | None, server: Any = None
    ) -> dict[str, Any]:
        try:
            if on_chunk is None:
                return _result((self._http if server is None else server).post(PATHS[kind], json=body))
            with self._http.stream("POST", PATHS[kind], json={**body, "stream": True}) as response:
                if response.status_code >= 400:
                    response.read()
                    return _result(response)
                return _relayed(response.iter_lines(), on_chunk)
        except httpx.TransportError as exc:
            raise self._stopped() from exc
        except RuntimeError as exc:  # httpx: the client was closed, as the scheduler dropped this engine
            if not self._http.is_closed:
                raise
            raise self._stopped() from exc
        except (BadRequest, EngineError) as exc:
            if "bad_alloc" not in str(exc):
                raise
            # The engine hit its memory bound (child.py) and refused the request, not died of it.
            limit = f" ({self.spec.memory_limit / (1 << 30):.1f} GiB)" if self.spec.memory_limit else ""
            raise DoesNotFit(
                f"{self.spec.name}: this request needs more memory than its engine may use{limit}; "
                "send a shorter one"
            ) from exc

    def _listener_failed(self, error: EngineError) -> CoveError:
        """The listener is the engine's own: when it cannot be reached because the process ended,
        say that, and how it ended (a killed process closes its socket just before it ends)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=1)
        return self._stopped() if self._process.poll() is not None else error

    def _stopped(self) -> CoveError:
        """Why the engine failed us: its process ended (and how), or it stopped answering."""
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return EngineError(f"the engine for {self.spec.name} stopped answering")
        if self._ended_by_us:  # we ended it, with this request on it: cove is stopping
            return ShuttingDown(f"the engine for {self.spec.name} was stopped: cove is shutting down")
        why = self._why()
        return EngineCrashed(f"the engine for {self.spec.name} stopped: {why}", why=why)

    def why_stopped(self) -> str:
        """How its process ended (for the scheduler's crash record)."""
        return self._why()

    def _why(self) -> str:
        code = self._process.poll()
        if code is not None:
            self._log.join(timeout=1)  # what it said before it ended is still in the pipe
        if code is None:
            how = "it did not answer"
        elif code < 0:
            how = f"it was killed by {signal.Signals(-code).name}"
        else:
            how = f"it exited with status {code}"
        said = [line for line in self._errors if "assert" in line.lower() or "error" in line.lower()]
        return f"{how} ({said[-1][:300]})" if said else how

    def _stop_process(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(OSError):  # a child that died has closed it already
                self._process.stdin.close()  # the child exits when its stdin ends
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def close(self) -> None:
        # A process that already ended on its own (the scheduler drops dead engines) crashed:
        # requests still on it must say how, not that cove stopped it.
        self._ended_by_us = self._ended_by_us or self._process.poll() is None
        self._closed = True
        self._stop_process()  # first: a request still streaming sees its engine end, and says why
        self._http.close()
        for other in self._others:
            other.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if self._tokenizer is not None:
            self._tokenizer.close()


_LOADING: weakref.WeakSet[IsolatedModel] = weakref.WeakSet()
_LOADING_LOCK = threading.Lock()


def stop_loading() -> None:
    """End every engine process still loading its model: cove is shutting down, and a load can
    take minutes that nobody will wait for."""
    with _LOADING_LOCK:
        loading = list(_LOADING)
    for model in loading:
        model._closed = model._ended_by_us = True
        with contextlib.suppress(OSError):  # it ended on its own meanwhile
            model._process.kill()


def _result(response: httpx.Response) -> dict[str, Any]:
    try:
        data: dict[str, Any] = response.json()
    except ValueError as exc:
        raise EngineError(f"the engine answered {response.status_code} with something not JSON") from exc
    if response.status_code >= 400 and "error" not in data:
        data = {"error": {"code": response.status_code, "message": response.text[:300]}}
    error = data.get("error")
    if response.status_code == 500 and isinstance(error, dict):
        # A live engine answers 500 when its request parser throws: the error the in-process
        # engine raises as RuntimeError, which is the request's fault (a 400), not the engine's.
        raise BadRequest(str(error.get("message") or "the engine refused the request"))
    raise_engine_error(data)
    return data


def _relayed(lines: Iterator[str], on_chunk: ChunkCallback) -> dict[str, Any]:
    """Hand each server-sent chunk on; stopping early closes the stream, which the engine cancels."""
    last: dict[str, Any] = {}
    for line in lines:
        if not line.startswith("data: "):
            continue
        payload = line.removeprefix("data: ")
        if payload == "[DONE]":
            break
        chunk: dict[str, Any] = json.loads(payload)
        raise_engine_error(chunk)
        last = chunk
        if on_chunk(chunk):
            break
    return last
