"""Ray Serve: a local Ray (2 CPUs, a small object store) runs two replicas of cove's engine with
the bundled model, and cove chats through it as a remote engine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import cove_script, free_port, linked_home

from cove.config import Settings
from cove.library.local import Cove

pytestmark = [pytest.mark.ray, pytest.mark.model]

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
MODEL = "gemma3:270m"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, model_home: Path) -> Iterator[str]:
    from cove.ray_serve.app import build

    port = free_port()
    ray.init(num_cpus=2, object_store_memory=80 << 20, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        request, _, _ = Cove(Settings(home=model_home)).prepare(MODEL)
        serve.run(build(request.spec, replicas=2, num_cpus=0.5, parallel=2), name="cove", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def ask(base: str, messages: list[dict[str, str]], tokens: int = 4) -> dict[str, Any]:
    body = {"model": MODEL, "messages": messages, "max_tokens": tokens, "temperature": 0}
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


def test_cove_chats_through_the_ray_deployment(deployed: str, cove_home: Path) -> None:
    cove = Cove(Settings.from_env())
    try:
        cove.create("onray", f"FROM openai+{deployed}/v1#{MODEL}\nPARAMETER temperature 0\n")
        messages = [{"role": "user", "content": "Say hello"}]
        whole = cove.chat("onray", messages, options={"num_predict": 6})
        assert whole.content and whole.completion_tokens > 0 and whole.prompt_tokens > 0
        streamed = "".join(e.content for e in cove.stream_chat("onray", messages, options={"num_predict": 6}))
        assert streamed == whole.content
    finally:
        cove.close()


def test_a_conversation_stays_on_its_replica_and_both_serve(deployed: str) -> None:
    opening = [{"role": "user", "content": "Tell me about owls"}]
    home = ask(deployed, opening)["system_fingerprint"]
    for turn in range(3):
        later = [
            *opening,
            {"role": "assistant", "content": "Owls hunt at night."},
            {"role": "user", "content": f"more {turn}"},
        ]
        assert ask(deployed, later)["system_fingerprint"] == home
    seen = {
        ask(deployed, [{"role": "user", "content": f"Topic number {i}"}])["system_fingerprint"]
        for i in range(10)
    }
    assert len(seen) == 2  # new conversations spread over both replicas


def test_a_stream_over_ray_ends_with_done_and_names_its_replica(deployed: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 5,
        "stream": True,
    }
    with httpx.stream("POST", f"{deployed}/v1/chat/completions", json=body, timeout=120) as reply:
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert any((c.get("choices") or [{}])[0].get("delta", {}).get("content") for c in chunks)
    assert all(c.get("system_fingerprint") for c in chunks)


def test_cove_ray_serve_deploys_onto_an_existing_cluster(
    deployed: str, model_home: Path, tmp_path: Path
) -> None:
    """The command itself, on the cluster the fixture started (--address), left running (--detach)."""
    address = ray.get_runtime_context().gcs_address
    port = deployed.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env["COVE_HOME"] = str(linked_home(model_home, tmp_path / "home"))
    command = [str(cove_script()), "ray", "serve", MODEL, "--replicas", "1", "--cpus", "0.5"]
    command += ["--address", address, "--port", port, "--detach"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"FROM openai+http://127.0.0.1:{port}/v1#{MODEL}" in done.stdout
    assert ask(deployed, [{"role": "user", "content": "Say yes"}])["choices"][0]["message"]["content"]
    assert len(serve.status().applications["cove"].deployments["cove-engine"].replica_states) >= 1
