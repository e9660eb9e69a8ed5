"""Ray Serve: `cove ray serve` with no --address starts a local Ray of its own (2 CPUs here, a
small object store), runs two replicas of cove's engine with the bundled model on it, and cove
chats through the FROM line it prints; the other checks share that one cluster (a Ray with
Serve takes 11-15 s to start here), and the last one stops it with Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from server_fixtures import cove_script, free_port, linked_home

from cove.config import Settings
from cove.library.local import Cove

pytestmark = [pytest.mark.ray, pytest.mark.model]

pytest.importorskip("ray.serve")
MODEL = "gemma3:270m"
FROM_LINE = "use it from cove with a recipe line: "
LOCAL_RAY = "started a local Ray at "
START_TIMEOUT_S = 600


@dataclass
class Deployment:
    """The running `cove ray serve`, what it printed, and where its local Ray is."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    gcs: str = ""
    from_line: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "\n".join(self.lines)[-4000:]


def _reader(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _collect(deployment: Deployment, lines: queue.Queue[str | None]) -> None:
    """Keeps the output coming in (so the pipe never fills) after start-up."""

    def drain() -> None:
        while (line := lines.get()) is not None:
            deployment.lines.append(line)

    threading.Thread(target=drain, daemon=True).start()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, model_home: Path) -> Iterator[Deployment]:
    home = linked_home(model_home, tmp_path_factory.mktemp("ray") / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVE_", "RAY_ADDRESS"))}
    env["COVE_HOME"] = str(home)
    port = free_port()
    command = [str(cove_script()), "ray", "serve", MODEL, "--replicas", "2", "--cpus", "0.5"]
    command += ["--parallel", "2", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deployment = Deployment(process, port)
    lines = _reader(process)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not deployment.from_line:
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            assert line is not None, f"cove ray serve ended early:\n{deployment.output()}"
            deployment.lines.append(line)
            if line.startswith(LOCAL_RAY):
                deployment.gcs = line[len(LOCAL_RAY) :].split()[0].rstrip(";")
            if line.startswith(FROM_LINE):
                deployment.from_line = line[len(FROM_LINE) :]
        _collect(deployment, lines)
        yield deployment
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def on_cluster(deployment: Deployment, code: str, *args: Any) -> Any:
    """What `code` sets `result` to, run by a driver of its own on the deployment's cluster (this
    process never joins it: a driver whose cluster goes away ends its process). A new local Ray
    takes a token (in ~/.ray), so who joins it says so."""
    prelude = (
        "import json, sys, ray\n"
        "ray.init(address=sys.argv[1], log_to_driver=False)\n"
        "args = json.loads(sys.argv[2])\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    command = [
        sys.executable,
        "-c",
        prelude + code + "\nprint(json.dumps(result))",
        deployment.gcs,
        json.dumps(args),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def ask(base: str, messages: list[dict[str, str]], tokens: int = 4) -> dict[str, Any]:
    body = {"model": MODEL, "messages": messages, "max_tokens": tokens, "temperature": 0}
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def test_cove_chats_through_the_from_line_cove_ray_serve_printed(
    deployed: Deployment, cove_home: Path
) -> None:
    assert deployed.from_line == f"FROM openai+http://127.0.0.1:{deployed.port}/v1#{MODEL}"
    assert deployed.gcs and _ray_processes(deployed)  # the local Ray it started, and named
    cove = Cove(Settings.from_env())
    try:
        cove.create("onray", f"{deployed.from_line}\nPARAMETER temperature 0\n")
        messages = [{"role": "user", "content": "Say hello"}]
        whole = cove.chat("onray", messages, options={"num_predict": 6})
        assert whole.content and whole.completion_tokens > 0 and whole.prompt_tokens > 0
        streamed = "".join(e.content for e in cove.stream_chat("onray", messages, options={"num_predict": 6}))
        assert streamed == whole.content
    finally:
        cove.close()


def test_a_conversation_stays_on_its_replica_and_both_serve(deployed: Deployment) -> None:
    opening = [{"role": "user", "content": "Tell me about owls"}]
    home = ask(deployed.base, opening)["system_fingerprint"]
    for turn in range(3):
        later = [
            *opening,
            {"role": "assistant", "content": "Owls hunt at night."},
            {"role": "user", "content": f"more {turn}"},
        ]
        assert ask(deployed.base, later)["system_fingerprint"] == home
    seen = {
        ask(deployed.base, [{"role": "user", "content": f"Topic number {i}"}])["system_fingerprint"]
        for i in range(10)
    }
    assert len(seen) == 2  # new conversations spread over both replicas


def test_a_stream_over_ray_ends_with_done_and_names_its_replica(deployed: Deployment) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 5,
        "stream": True,
    }
    with httpx.stream("POST", f"{deployed.base}/v1/chat/completions", json=body, timeout=120) as reply:
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert any((c.get("choices") or [{}])[0].get("delta", {}).get("content") for c in chunks)
    assert all(c.get("system_fingerprint") for c in chunks)


def test_every_node_is_asked_whether_it_has_the_model_file(deployed: Deployment, model_home: Path) -> None:
    from cove.ray_serve.nodes import files_of

    request, _, _ = Cove(Settings(home=model_home)).prepare(MODEL)
    files = files_of(request.spec)
    (path, size) = next(iter(files.items()))
    missing = str(model_home / "not-there.gguf")
    checks = "from cove.ray_serve.nodes import nodes_lacking\nresult = [nodes_lacking(f) for f in args]"
    found, absent, other = on_cluster(deployed, checks, files, {missing: 10}, {path: size + 1})
    assert found == []
    (lacking,) = absent
    assert lacking.startswith("node ") and f"{missing} is missing" in lacking
    (changed,) = other
    assert f"{path} has {size} bytes, not {size + 1}" in changed


def test_cove_ray_serve_deploys_onto_an_existing_cluster(
    deployed: Deployment, model_home: Path, tmp_path: Path
) -> None:
    """The command with --address, on the cluster the first one started, left running (--detach)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env["COVE_HOME"] = str(linked_home(model_home, tmp_path / "home"))
    env["RAY_AUTH_MODE"] = "token"  # a new local Ray takes its token (README)
    command = [str(cove_script()), "ray", "serve", MODEL, "--replicas", "1", "--cpus", "0.5"]
    command += ["--address", deployed.gcs, "--port", str(deployed.port), "--detach"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"FROM openai+http://127.0.0.1:{deployed.port}/v1#{MODEL}" in done.stdout
    assert LOCAL_RAY not in done.stdout  # it joined; it started nothing of its own
    assert ask(deployed.base, [{"role": "user", "content": "Say yes"}])["choices"][0]["message"]["content"]
    status = (
        "from ray import serve\n"
        "result = serve.status().applications['cove'].deployments['cove-engine'].status"
    )
    assert on_cluster(deployed, status) == "HEALTHY"


def _refuses(address: str) -> bool:
    """Nothing listens there (loopback only: the tests reach nothing else)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except OSError:
        return True


def _ray_processes(deployment: Deployment) -> list[str]:
    """The processes the command started (its local Ray's among them), but itself: they share
    its session."""
    found = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.pid != deployment.process.pid and os.getsid(process.pid) == deployment.process.pid:
                found.append(process.info["name"])
        except (OSError, psutil.Error):
            continue
    return found


def _eventually(check: Any, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_ctrl_c_stops_the_deployment_and_the_local_ray_it_started(deployed: Deployment) -> None:
    """Last in this file: it ends the cluster the others share."""
    deployed.process.send_signal(signal.SIGINT)
    assert deployed.process.wait(timeout=120) == 130, deployed.output()
    assert _eventually(lambda: "stopped" in deployed.lines, 10), deployed.output()
    assert "Traceback" not in deployed.output(), deployed.output()
    assert _eventually(lambda: _refuses(f"127.0.0.1:{deployed.port}")), "Serve's HTTP port still answers"
    assert _eventually(lambda: not _ray_processes(deployed)), f"still running: {_ray_processes(deployed)}"
