"""Load on the fake engine: a full queue answers 503, metrics after traffic, and a client that
leaves mid-stream stops its generation and frees its slot."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_fixtures import (
    LiveServer,
    TrackingEngine,
    anyio_backend,
    client,
    make_app,
    tiny_cove,
    wait_for,
    words,
)
from test_server_guard import assert_ollama_error, assert_openai_error

from cove.library.local import Cove

__all__ = ["anyio_backend"]

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "stream": False}
OAI = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def gated(cove_home: Path) -> Iterator[tuple[Cove, TrackingEngine]]:
    """One slot and one queue place; every generation waits at the engine's gate."""
    engine = TrackingEngine(gate=threading.Event())
    cove = tiny_cove(cove_home, engine, num_parallel=1, max_queue=1)
    yield cove, engine
    engine.gate.set()  # type: ignore[union-attr]
    cove.close()


@pytest.fixture
def no_queue(cove_home: Path) -> Iterator[tuple[Cove, TrackingEngine]]:
    """One slot and no queue at all: a second request is refused unless the first one's slot is free."""
    engine = TrackingEngine(token_delay=0.02)
    cove = tiny_cove(cove_home, engine, num_parallel=1, max_queue=0)
    yield cove, engine
    cove.close()


def active(cove: Cove) -> int:
    return sum(m.active for m in cove.loaded())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition as {(name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.anyio
async def test_full_queue_answers_503_and_accepted_requests_finish(
    gated: tuple[Cove, TrackingEngine],
) -> None:
    cove, engine = gated
    assert engine.gate is not None
    async with client(make_app(cove), timeout=60) as c:
        accepted = [
            asyncio.create_task(c.post("/api/chat", json=CHAT)),
            asyncio.create_task(c.post("/v1/chat/completions", json={**OAI, "stream": True})),
        ]
        # One holds the slot, one waits in the queue: the model is now full.
        await asyncio.to_thread(wait_for, lambda: active(cove) == 2, 20.0, "two requests in flight")
        metrics = samples((await c.get("/metrics")).text)
        assert metrics[("cove_queue_depth", ())] == 1
        assert metrics[("cove_loaded_models", ())] == 1

        excess = [
            ("/api/chat", CHAT),
            ("/api/chat", {**CHAT, "stream": True}),
            ("/api/generate", {"model": "tiny", "prompt": "x"}),
            ("/v1/chat/completions", OAI),
            ("/v1/chat/completions", {**OAI, "stream": True}),
            ("/v1/completions", {"model": "tiny", "prompt": "x", "stream": True}),
        ]
        refused = await asyncio.gather(*(c.post(path, json=body) for path, body in excess))
        for (path, _), response in zip(excess, refused, strict=True):
            check = assert_openai_error if path.startswith("/v1") else assert_ollama_error
            assert "retry" in check(response, 503)
            assert int(response.headers["retry-after"]) > 0
        assert len(engine.requests) <= 1  # the refused ones never reached the engine

        engine.gate.set()
        whole, streamed = await asyncio.gather(*accepted)
        assert whole.status_code == 200
        assert whole.json()["message"]["content"] == "You said: hello"
        assert streamed.status_code == 200
        assert streamed.text.endswith("data: [DONE]\n\n")
        deltas = [json.loads(line[6:]) for line in streamed.text.split("\n\n") if line.startswith("data: {")]
        assert "".join(d["choices"][0]["delta"].get("content", "") for d in deltas) == "You said: hello"
        assert len(engine.requests) == 2

        # The queue has drained: the next request is served, and nothing is left waiting.
        again = await c.post("/api/chat", json=CHAT)
        assert again.status_code == 200
        metrics = samples((await c.get("/metrics")).text)
    assert metrics[("cove_queue_depth", ())] == 0
    assert metrics[("cove_requests_total", (("route", "/api/chat"), ("status", "503")))] == 2
    assert metrics[("cove_requests_total", (("route", "/api/chat"), ("status", "200")))] == 2


@pytest.mark.anyio
async def test_metrics_after_traffic(fake_cove: Cove) -> None:
    async with client(make_app(fake_cove)) as c:
        before = await c.get("/metrics")
        assert before.headers["content-type"].startswith("text/plain")
        await c.post("/api/chat", json=CHAT)
        await c.post(
            "/api/chat", json={**CHAT, "stream": True, "messages": [{"role": "user", "content": words(4)}]}
        )
        await c.post("/v1/chat/completions", json={**OAI, "stream": True})
        await c.post("/api/chat", json={**CHAT, "model": "nosuch"})
        await c.get("/no/such/path/abc123")
        await c.head(f"/api/blobs/sha256:{'0' * 64}")
        text = (await c.get("/metrics")).text
    for name in (
        "cove_requests_total",
        "cove_tokens_total",
        "cove_time_to_first_token_seconds",
        "cove_inter_token_seconds",
        "cove_queue_depth",
        "cove_loaded_models",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    found = samples(text)
    # Metrics name a model by its full name, however a request spelled it.
    assert found[("cove_requests_total", (("route", "/api/chat"), ("status", "200")))] == 2
    assert found[("cove_requests_total", (("route", "/api/chat"), ("status", "404")))] == 1
    assert found[("cove_requests_total", (("route", "/v1/chat/completions"), ("status", "200")))] == 1
    assert found[("cove_requests_total", (("route", "other"), ("status", "404")))] == 1
    assert found[("cove_requests_total", (("route", "/api/blobs"), ("status", "404")))] == 1
    assert not any("abc123" in str(key) for key in found)
    # "You said: hello" is 3 tokens twice, and "You said: w0 w1 w2 w3" is 6.
    assert found[("cove_tokens_total", (("direction", "out"), ("model", "tiny:latest")))] == 12
    assert found[("cove_tokens_total", (("direction", "in"), ("model", "tiny:latest")))] == 15
    assert found[("cove_time_to_first_token_seconds_count", (("model", "tiny:latest"),))] == 3
    assert found[("cove_inter_token_seconds_count", (("model", "tiny:latest"),))] == 5 + 2
    assert found[("cove_queue_depth", ())] == 0
    assert found[("cove_loaded_models", ())] == 1
    assert found[("cove_model_memory_bytes", (("model", "tiny:latest"),))] > 0


# -- a client that goes away ---------------------------------------------------------------------

STREAMS: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": words(200)}]}),
    ("/api/generate", {"model": "tiny", "prompt": words(200)}),
    ("/v1/chat/completions", {**OAI, "stream": True, "messages": [{"role": "user", "content": words(200)}]}),
    ("/v1/completions", {"model": "tiny", "prompt": words(200), "stream": True}),
]


@pytest.mark.parametrize(("path", "body"), STREAMS, ids=[p for p, _ in STREAMS])
def test_disconnect_stops_generation_and_frees_the_slot(
    no_queue: tuple[Cove, TrackingEngine], path: str, body: dict[str, Any]
) -> None:
    cove, engine = no_queue
    with LiveServer(make_app(cove)) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            received = (line for line in response.iter_lines() if line.strip())
            first = [json.loads(line.removeprefix("data: ")) for line in (next(received), next(received))]
            assert all("done" in part or "choices" in part for part in first)
            # While it streams, the only slot is taken and there is no queue to wait in.
            busy = http.post("/api/chat", json=CHAT)
            assert busy.status_code == 503
        # Leaving the block closed the connection with most of the answer unsent.
        wait_for(lambda: len(engine.outcomes) == 1, what="the generation to end")
        (outcome,) = engine.outcomes
        assert outcome.finish_reason == "cancelled"
        assert 2 <= outcome.sent < 202
        wait_for(lambda: active(cove) == 0, what="the slot to be released")

        r = http.post("/api/chat", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.json()["message"]["content"] == "You said: hello"
        metrics = samples(http.get("/metrics").text)
    assert metrics[("cove_queue_depth", ())] == 0


WHOLE: list[tuple[str, dict[str, Any]]] = [
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": words(200)}], "stream": False}),
    ("/v1/chat/completions", {**OAI, "messages": [{"role": "user", "content": words(200)}]}),
    ("/v1/completions", {"model": "tiny", "prompt": words(200)}),
    ("/v1/responses", {"model": "tiny", "input": words(200), "store": False}),
]


@pytest.mark.parametrize(("path", "body"), WHOLE, ids=[p for p, _ in WHOLE])
def test_a_client_that_leaves_a_whole_answer_frees_the_slot(
    no_queue: tuple[Cove, TrackingEngine], path: str, body: dict[str, Any]
) -> None:
    """Not streamed, the answer is still stopped when the client hangs up (BAD-INPUTS 16)."""
    cove, engine = no_queue
    with LiveServer(make_app(cove)) as url:
        with httpx.Client(base_url=url, timeout=0.5) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post(path, json=body)  # 200 words at 20 ms each: it gives up long before
        wait_for(lambda: len(engine.outcomes) == 1, timeout=10, what="the generation to stop")
        (outcome,) = engine.outcomes
        # Cancelled, not run out: it stopped well before its 200 words (4 s at 20 ms each).
        assert outcome.finish_reason == "cancelled" and outcome.sent < 180
        wait_for(lambda: active(cove) == 0, timeout=5, what="the slot to be released")
        with httpx.Client(base_url=url, timeout=30) as http:
            r = http.post("/api/chat", json=CHAT)
        assert r.status_code == 200, r.text
