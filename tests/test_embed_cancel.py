"""A client that leaves an embedding call, queued or running, frees its slot within a second
(BAD-INPUTS 16), on all three embedding routes; and a batched embedding adds up as one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeEngine, FakeModel
from server_fixtures import LiveServer, add_embedder, make_app, tiny_cove, wait_for

from cove.config import Settings
from cove.engine.base import LoadSpec
from cove.engine.embedding import embed_in_batches
from cove.errors import Cancelled
from cove.library.local import Cove

#: The fake embedder takes this long per input: 400 inputs hold the slot for 20 s.
PER_INPUT_S = 0.05
BIG = [f"text {i}" for i in range(400)]
ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/api/embed", {"model": "embedder", "input": BIG}),
    ("/v1/embeddings", {"model": "embedder", "input": BIG}),
]
SMALL = {"model": "embedder", "input": "hello"}
MODEL = "gemma3:270m"


class SlowEmbedder(FakeEngine):
    """Embeds at PER_INPUT_S an input and counts what it embedded."""

    embedded: int = 0

    def __call__(self, spec: LoadSpec) -> FakeModel:
        model = super().__call__(spec)
        embed = model.embed

        def slow(body: dict[str, Any]) -> dict[str, Any]:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            time.sleep(PER_INPUT_S * len(inputs))
            with self.lock:
                self.embedded += len(inputs)
            return embed(body)

        model.embed = slow  # type: ignore[method-assign]
        return model


@pytest.fixture
def one_slot(cove_home: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Cove, SlowEmbedder]]:
    engine = SlowEmbedder()
    cove = tiny_cove(cove_home, engine, num_parallel=1, max_queue=getattr(request, "param", 0))
    add_embedder(cove)
    yield cove, engine
    cove.close()


def active(cove: Cove) -> int:
    """Requests holding or waiting for a slot."""
    return sum(m.active for m in cove.loaded())


@pytest.mark.parametrize(("path", "body"), ROUTES, ids=[p for p, _ in ROUTES])
def test_a_client_that_leaves_a_running_embedding_frees_the_slot(
    one_slot: tuple[Cove, SlowEmbedder], path: str, body: dict[str, Any]
) -> None:
    cove, engine = one_slot
    with LiveServer(make_app(cove)) as url:
        with httpx.Client(base_url=url, timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post(path, json=body)  # 20 s of work: it gives up long before
        left = time.monotonic()
        wait_for(lambda: active(cove) == 0, timeout=8, what="the slot to be released")
        freed = time.monotonic() - left
        with httpx.Client(base_url=url, timeout=30) as http:
            small = http.post("/api/embed", json=SMALL)
        assert small.status_code == 200, small.text  # no queue: a held slot would answer 503
        assert len(small.json()["embeddings"]) == 1
    assert engine.embedded < len(BIG) // 2, "the abandoned embedding ran on"
    assert freed < 5, f"the slot was freed {freed:.1f} s after the client left"


@pytest.mark.parametrize("one_slot", [1], indirect=True)
@pytest.mark.parametrize("path", ["/api/embed", "/api/embeddings", "/v1/embeddings"])
def test_a_client_that_leaves_while_queued_is_dropped(one_slot: tuple[Cove, SlowEmbedder], path: str) -> None:
    cove, _ = one_slot
    small = {"model": "embedder", "prompt": "hello"} if path == "/api/embeddings" else SMALL
    with LiveServer(make_app(cove)) as url:
        five_s = {"model": "embedder", "input": BIG[:100]}
        holder = threading.Thread(target=lambda: httpx.post(f"{url}/api/embed", json=five_s, timeout=60))
        holder.start()
        wait_for(lambda: active(cove) == 1, what="the big embedding to take the slot")
        with httpx.Client(base_url=url, timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post(path, json=small)  # queued behind 5 s of work
        wait_for(lambda: active(cove) == 1, timeout=5, what="the queued request to give up")
        # The one queue place is free again: another request is queued, not refused.
        with httpx.Client(base_url=url, timeout=1.0) as http, pytest.raises(httpx.ReadTimeout):
            http.post("/api/embed", json=SMALL)
        holder.join(timeout=60)


def test_batches_add_up_to_one_answer() -> None:
    calls: list[list[Any]] = []

    def embed(body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body["input"])
        data = [{"index": i, "embedding": [float(len(str(x)))]} for i, x in enumerate(body["input"])]
        return {"data": data, "usage": {"prompt_tokens": 2 * len(body["input"])}, "truncated": 1}

    inputs = [f"x{i}" for i in range(100)]
    result = embed_in_batches(embed, inputs, target_s=10.0)
    assert len(calls) > 1 and sum(map(len, calls)) == 100 and len(calls[1]) == 2 * len(calls[0])
    assert [d["index"] for d in result["data"]] == list(range(100))
    assert result["usage"] == {"prompt_tokens": 200, "total_tokens": 200}
    assert result["truncated"] == len(calls)
    assert embed_in_batches(embed, [1, 2, 3])["data"][0]["index"] == 0  # token ids are one input
    assert calls[-1] == [[1, 2, 3]]


def test_a_set_cancel_stops_before_the_next_batch() -> None:
    cancel = threading.Event()
    calls = 0

    def embed(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        cancel.set()  # the client leaves during the first batch
        return {"data": [{"index": i, "embedding": [0.0]} for i in range(len(body["input"]))]}

    with pytest.raises(Cancelled):
        embed_in_batches(embed, ["a"] * 50, cancel=cancel)
    assert calls == 1


@pytest.mark.model
def test_the_real_engine_frees_the_slot_of_an_abandoned_embedding(real_home: Path) -> None:
    """The bundled Gemma as an embedder, one slot, no queue: 3,000 inputs take it a minute or more."""
    many = [f"sentence number {i} about nothing in particular" for i in range(3000)]
    with (
        Cove(Settings(home=real_home, num_parallel=1, max_queue=0)) as cove,
        LiveServer(make_app(cove)) as url,
    ):
        with httpx.Client(base_url=url, timeout=120) as http:
            assert http.post("/api/embed", json={"model": MODEL, "input": "warm up"}).status_code == 200
        with httpx.Client(base_url=url, timeout=2.0) as impatient, pytest.raises(httpx.ReadTimeout):
            impatient.post("/v1/embeddings", json={"model": MODEL, "input": many})
        left = time.monotonic()
        wait_for(lambda: active(cove) == 0, timeout=10, what="the slot to be released")
        freed = time.monotonic() - left
        with httpx.Client(base_url=url, timeout=30) as http:
            small = http.post("/api/embed", json={"model": MODEL, "input": "hello"})
        assert small.status_code == 200, small.text
    assert freed < 5, f"the slot was freed {freed:.1f} s after the client left"


def test_the_library_embed_stops_between_batches_when_cancelled(one_slot: tuple[Cove, SlowEmbedder]) -> None:
    """Cove.embed itself (the CLI's and the library's door) gives up when told to, mid-request."""
    cove, engine = one_slot
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        cove.embed("embedder", BIG, cancel=cancel)  # 20 s of work unless stopped
    assert time.monotonic() - started < 5
    assert 0 < engine.embedded < len(BIG)
    assert active(cove) == 0
