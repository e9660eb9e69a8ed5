"""The engine process: one model's llama.cpp server alone in a process, so its faults stay there.

Started by `engine/process.py` as `python -m cove.engine.child`. It reads the model's load
settings as one JSON line on stdin, bounds its own memory (RLIMIT_DATA, from the scheduler's
estimate), loads the model, and answers one JSON line on stdout: the
address of the engine's own loopback listener, the secret that locks it, and why the model
cannot take tools (or null), or `{"error": ...}` when the load failed. Then it waits until its
stdin closes (the parent stopped it, or died) and exits without running the engine's destructor.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import LoadSpec

if TYPE_CHECKING:
    pass


def spec_to_json(spec: LoadSpec) -> str:
    data = {**spec.__dict__, "model_path": str(spec.model_path)}
    data["adapter_path"] = str(spec.adapter_path) if spec.adapter_path else None
    return json.dumps(data)


def spec_from_json(line: str) -> LoadSpec:
    data: dict[str, Any] = json.loads(line)
    data["model_path"] = Path(data["model_path"])
    data["adapter_path"] = Path(data["adapter_path"]) if data.get("adapter_path") else None
    return LoadSpec(**data)


def _answer_channel() -> Any:
    """Our one line to the parent gets the real stdout; the engine's own prints (it writes to fd 1
    from C) are sent to stderr, where the parent keeps them for error messages."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return channel


def _say(channel: Any, data: dict[str, Any]) -> None:
    channel.write(json.dumps(data) + "\n")
    channel.flush()


def main() -> None:
    # Ctrl-C at a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _answer_channel()
    from ..errors import CoveError
    from .llamacpp import LlamaCppModel

    spec = spec_from_json(sys.stdin.readline())
    # An embedder renders no template, and its engine reserves a logits buffer of vocabulary x
    # batch that it never touches (4.3 GB of address space for gemma3's 262k tokens at a 4096
    # batch, against 1 GB resident): RLIMIT_DATA counts address space, so it would refuse a load
    # that fits. Only chat engines, where a runaway render would land, are bounded.
    if not spec.embedding:
        bound_memory(spec.memory_limit)
    # The listener is a socket file in a folder only this user can enter, locked by a secret too.
    folder = tempfile.mkdtemp(prefix="cove-engine-")
    try:
        model = LlamaCppModel(spec, listen=os.path.join(folder, "engine.sock"))
    except CoveError as exc:
        _say(channel, {"error": str(exc)})
        _leave(folder, 3)
    hello = {"address": model.address, "secret": model.secret, "no_tools": model.no_tools}
    _say(channel, {**hello, "others": model.other_addresses})
    sys.stdin.read()
    _leave(folder, 0)


def bound_memory(limit: int) -> None:
    """Cap this process's writable memory (RLIMIT_DATA): past it an allocation fails and the
    engine ends, alone. The weights are a read-only map of the file and do not count."""
    if limit <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _leave(folder: str, status: int) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    # The engine's destructor joins its threads and can hang; the OS frees all of it at exit.
    os._exit(status)


if __name__ == "__main__":
    main()
