"""The `cove` command against a real `cove serve` on the bundled model: the server owns the turn."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_fixtures import RealServer, _real_servers, cove_script, real_server

__all__ = ["_real_servers", "real_server"]
pytestmark = pytest.mark.model

MODEL = "gemma3:270m"


def cove(server: RealServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, pointed at the server, as a user with `cove serve` running would use it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    env.update({"COVE_HOME": str(server.home), "COVE_HOST": server.url.removeprefix("http://")})
    return subprocess.run(
        [str(cove_script()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def conversations(server: RealServer) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(server.url + "/api/cove/conversations", timeout=30).json()[
        "conversations"
    ]
    return found


def chats_served(server: RealServer) -> float:
    """How many /api/chat requests the server answered: proof that a turn went through it."""
    text = httpx.get(server.url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "cove_requests":
            return sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and s.labels["route"] == "/api/chat"
            )
    return 0.0


def test_run_and_resume_through_the_server(real_server: RealServer) -> None:
    before = {c["id"] for c in conversations(real_server)}
    served = chats_served(real_server)
    first = cove(real_server, "run", MODEL, "Say hello.", "--verbose")
    assert first.returncode == 0, first.stderr
    assert chats_served(real_server) == served + 1
    assert first.stdout.strip()
    assert "tokens/s" in first.stderr
    (new,) = [c for c in conversations(real_server) if c["id"] not in before]
    assert (new["model"], new["source"]) == (MODEL, "cli")

    second = cove(real_server, "run", "--resume", str(new["id"]), "And goodbye.")
    assert second.returncode == 0, second.stderr
    chat = httpx.get(f"{real_server.url}/api/cove/conversations/{new['id']}", timeout=30).json()
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert chat["messages"][2]["content"] == "And goodbye."


def test_ps_through_the_server_shows_the_loaded_model(real_server: RealServer) -> None:
    assert cove(real_server, "run", MODEL, "Hi.").returncode == 0
    shown = cove(real_server, "ps")
    assert shown.returncode == 0, shown.stderr
    assert MODEL in shown.stdout
