"""Two real `cove serve` processes on loopback ports as the replicas of a third: the real remote
path, streaming included; one killed mid-answer; affinity and health with real upstreams."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import RealServer, cove_script, linked_home, start_serve

from cove.config import Settings
from cove.engine.remote import RemoteModel
from cove.engine.remote_errors import RemoteError
from cove.library.local import Cove

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"


def stop(server: RealServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def upstreams(model_home: Path, tmp_path: Path) -> Iterator[list[RealServer]]:
    servers: list[RealServer] = []
    try:
        for name in ("one", "two"):
            folder = tmp_path / name
            folder.mkdir()
            servers.append(start_serve(linked_home(model_home, folder / "home"), folder))
        yield servers
    finally:
        for server in servers:
            stop(server)


def recipe_for(servers: list[RealServer]) -> str:
    return "".join(f"FROM openai+{s.url}/v1#{MODEL}\n" for s in servers) + "PARAMETER temperature 0\n"


def streamed(stream: Iterator[Any], stop_after: int | None = None) -> str:
    text = []
    for event in stream:
        text.append(event.content)
        if stop_after is not None and len(text) >= stop_after:
            break
    return "".join(text)


def test_a_third_cove_serves_through_two_real_upstreams(
    upstreams: list[RealServer], tmp_path: Path, cove_home: Path
) -> None:
    third = Cove(Settings.from_env())
    try:
        third.create("far", recipe_for(upstreams))
        direct = httpx.post(
            upstreams[0].url + "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "Say hi"}],
                "temperature": 0,
                "max_tokens": 8,
            },
            timeout=120,
        ).json()["choices"][0]["message"]["content"]
        messages = [{"role": "user", "content": "Say hi"}]
        whole = third.chat("far", messages, options={"num_predict": 8})
        assert whole.content == direct and whole.completion_tokens > 0 and whole.prompt_tokens > 0
        text = streamed(third.stream_chat("far", messages, options={"num_predict": 8}))
        assert text == direct
        model = next(r.model for r in third.scheduler.loaded() if r.spec.name == "far:latest")
        assert isinstance(model, RemoteModel)
        served = [r["served"] for r in model.describe()]
        assert sum(served) == 2 and served.count(2) == 1  # one conversation, one replica (affinity)
        other = third.chat("far", [{"role": "user", "content": "Name a colour"}], options={"num_predict": 4})
        assert other.content and sorted(r["served"] for r in model.describe()) == [1, 2]  # the idler one
    finally:
        third.close()


def test_one_upstream_killed_mid_answer(upstreams: list[RealServer], cove_home: Path) -> None:
    third = Cove(Settings.from_env())
    try:
        third.create("far", recipe_for(upstreams))
        third.chat("far", [{"role": "user", "content": "warm up"}], options={"num_predict": 2})
        model = next(r.model for r in third.scheduler.loaded() if r.spec.name == "far:latest")
        assert isinstance(model, RemoteModel)
        messages = [{"role": "user", "content": "Count from 1 to 200, one number a line."}]
        stream = third.stream_chat("far", messages, options={"num_predict": 400})
        first = next(stream)
        assert first.content
        busy = next(i for i, r in enumerate(model.describe()) if r["active"])
        os.kill(upstreams[busy].process.pid, signal.SIGKILL)
        with pytest.raises(RemoteError) as caught:
            for _ in stream:
                pass
        message = str(caught.value)
        assert "\n" not in message and "answer stopped part way" in message and "127.0.0.1" in message
        assert model.describe()[busy]["healthy"] is False
        # The other replica goes on, for this conversation too.
        again = third.chat("far", messages, options={"num_predict": 4})
        assert again.content
        assert model.describe()[1 - busy]["served"] >= 1
    finally:
        third.close()


def test_a_real_cove_serve_in_front(upstreams: list[RealServer], model_home: Path, tmp_path: Path) -> None:
    """The third is a `cove serve` too: `cove create` from a recipe file, then its own APIs."""
    folder = tmp_path / "front"
    folder.mkdir()
    home = folder / "home"
    (folder / "Recipe").write_text(recipe_for(upstreams))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    made = subprocess.run(
        [str(cove_script()), "create", "far", "-f", str(folder / "Recipe")],
        env={**env, "COVE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    front = start_serve(home, folder)
    try:
        body = {
            "model": "far",
            "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": 6,
            "stream": True,
        }
        with httpx.stream("POST", front.url + "/v1/chat/completions", json=body, timeout=120) as reply:
            lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
        assert reply.status_code == 200 and lines[-1] == "data: [DONE]"
        ps = httpx.get(front.url + "/api/ps", timeout=10).json()["models"]
        assert [m["name"] for m in ps] == ["far:latest"] and ps[0]["size"] == 0
        assert ps[0]["cove_runs_on"] == [s.url.removeprefix("http://") for s in upstreams]
        metrics = httpx.get(front.url + "/metrics", timeout=10).text
        assert 'cove_tokens_total{direction="out",model="far:latest"}' in metrics
        for server in upstreams:
            stop(server)
        ollama = {"model": "far", "messages": body["messages"], "stream": False}
        failed = httpx.post(front.url + "/api/chat", json=ollama, timeout=120)
        assert failed.status_code == 502 and "127.0.0.1" in failed.json()["error"]
    finally:
        stop(front)
